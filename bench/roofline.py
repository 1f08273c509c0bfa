"""Roofline: a generator's FLOPs per face against this machine's measured float32 matmul rate.

    python bench/roofline.py [--json bench/results/roofline.json]

FLOPs are counted analytically from the Keras layers (2 x multiply-accumulates of Dense, Conv2D and
Conv2DTranspose; activations, normalisation and bias adds are ignored, they are a few percent), for our production
64 px generator (training.config defaults) and for the seeds' ArtiFace generator (bench/baseline_artiface.py).
The ceiling is a 2048 x 2048 float32 matmul (NumPy and TensorFlow, best of both) on all cores: faces/s can not
exceed rate / FLOPs per face. Also measured: each generator's own best faces/s through its serving path.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from facegen import model_folder  # noqa: E402


def layer_macs(model) -> list[tuple[str, int]]:
    """Multiply-accumulates per sample of each Dense / Conv2D / Conv2DTranspose layer, from built shapes."""
    import keras

    rows = []

    def visit(layer):
        if isinstance(layer, keras.layers.Dense):
            rows.append((layer.name, int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])))
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            # Every input pixel is scattered through the whole kernel: H_in * W_in * k * k * C_in * C_out.
            kh, kw, c_out, c_in = layer.kernel.shape
            h, w = layer._facegen_input_hw
            rows.append((layer.name, h * w * kh * kw * c_in * c_out))
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, c_out = layer.kernel.shape
            h, w = layer._facegen_output_hw
            rows.append((layer.name, h * w * kh * kw * c_in * c_out))

    for layer in _leaf_layers(model):
        visit(layer)
    return rows


def _leaf_layers(model):
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            yield layer


def _record_shapes(model, inputs):
    """Run once with hooks that note each conv layer's input and output spatial size."""
    import keras

    originals = {}
    for layer in _leaf_layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            original = layer.call

            def hooked(x, *args, _layer=layer, _original=original, **kwargs):
                y = _original(x, *args, **kwargs)
                _layer._facegen_input_hw = (int(x.shape[1]), int(x.shape[2]))
                _layer._facegen_output_hw = (int(y.shape[1]), int(y.shape[2]))
                return y

            originals[layer] = original
            layer.call = hooked
    model(inputs)
    for layer, original in originals.items():
        layer.call = original


def ours():
    from training.config import TrainConfig
    from training.networks import build_generator
    import keras

    # The bundled default model's architecture (its manifest keeps the training config); the config defaults else.
    models = Path(__file__).resolve().parents[1] / "models"
    name, config = "facegen-64 (config defaults)", TrainConfig(resolution=64)
    default = model_folder.read_default(models)
    if default is not None:
        manifest = json.loads((models / default / "manifest.json").read_text())
        name, config = f"{default} (ours, the default model)", TrainConfig(**manifest["training"]["config"])
    config.validate()
    model = build_generator(config)
    inputs = [keras.ops.zeros((1, config.latent_size)), keras.ops.zeros((1, config.num_attributes))]
    _record_shapes(model, inputs)
    return name, model, config.latent_size, config.num_attributes


def artiface():
    import importlib.util

    spec = importlib.util.spec_from_file_location("baseline_arch", Path(__file__).with_name("baseline_artiface.py"))
    # Only the builder is needed: read it without starting the baseline's Flask app.
    source = spec.loader.get_source("baseline_arch")
    namespace = {}
    exec(source.split("_started = time.perf_counter()")[0], namespace)
    model = namespace["build_generator"]()
    _record_shapes(model, np.zeros((1, namespace["LATENT"]), np.float32))
    return "ArtiFace (seeds' baseline)", model, namespace["LATENT"], None


def matmul_gflops(seconds: float = 3.0, n: int = 2048) -> dict:
    import tensorflow as tf

    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    out = {}
    for name, fn in (("numpy", lambda: a @ b), ("tensorflow", lambda: tf.matmul(ta, tb).numpy())):
        ta, tb = tf.constant(a), tf.constant(b)
        fn()
        best = float("inf")
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[name] = round(2 * n ** 3 / best / 1e9, 1)
    return out


def measured_faces_per_s(model, latent, attrs, batch: int, seconds: float = 3.0) -> float:
    import tensorflow as tf

    inputs = [tf.zeros((batch, latent))] + ([tf.zeros((batch, attrs))] if attrs is not None else [])
    call = tf.function(lambda *x: model(list(x) if len(x) > 1 else x[0], training=False))
    call(*inputs)
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        call(*inputs).numpy()
        best = min(best, time.perf_counter() - t)
    return round(batch / best, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rates = matmul_gflops()
    peak = max(rates.values())
    report = {"matmul_gflops": rates, "cpus": os.cpu_count(), "load": os.getloadavg(), "models": []}
    print(f"float32 matmul 2048^3 (best of runs): {rates} GFLOP/s; ceiling used: {peak}")
    for build in (ours, artiface):
        name, model, latent, attrs = build()
        rows = layer_macs(model)
        gflop = 2 * sum(m for _, m in rows) / 1e9
        batch = 16 if attrs is not None else 4
        measured = measured_faces_per_s(model, latent, attrs, batch)
        entry = {"name": name, "parameters": int(model.count_params()), "gflop_per_face": round(gflop, 3),
                 "layers_mmac": {n: round(m / 1e6, 1) for n, m in rows},
                 "ceiling_faces_per_s": round(peak / gflop, 1), "measured_faces_per_s": measured,
                 "measured_batch": batch, "fraction_of_ceiling": round(measured * gflop / peak, 2)}
        report["models"].append(entry)
        print(f"{name}: {entry['parameters']:,} parameters, {gflop:.2f} GFLOP/face -> ceiling "
              f"{entry['ceiling_faces_per_s']} faces/s; measured {measured} faces/s at batch {batch} "
              f"({entry['fraction_of_ceiling']:.0%} of the ceiling)")
    # The machine may be shared: measure the ceiling again after the models and keep the best of both.
    again = matmul_gflops()
    report["matmul_gflops_after"] = again
    best = max(peak, *again.values())
    if best > peak:
        for entry in report["models"]:
            entry["ceiling_faces_per_s"] = round(best / entry["gflop_per_face"], 1)
            entry["fraction_of_ceiling"] = round(entry["measured_faces_per_s"] * entry["gflop_per_face"] / best, 2)
    report["ceiling_gflops"] = best
    print(f"matmul again: {again} GFLOP/s; ceiling used: {best}")
    for entry in report["models"]:
        print(f"  {entry['name']}: ceiling {entry['ceiling_faces_per_s']} faces/s, measured "
              f"{entry['measured_faces_per_s']} ({entry['fraction_of_ceiling']:.0%})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
