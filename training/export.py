"""``export``: a training run's generator -> TensorFlow SavedModel + manifest.json (see docs/ARCHITECTURE.md).

The SavedModel holds the whole path from (noise, attributes) to uint8 RGB pixels, so serving needs TensorFlow,
NumPy and the manifest, and no Keras or training code.
"""

import datetime
import os
import shutil
import tempfile
from pathlib import Path

from facegen import model_folder
from training.errors import UsageError


def add_arguments(parser):
    parser.add_argument("--run", required=True, type=Path, help="training run folder (written by `train --out`)")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write (replaced if it exists)")
    parser.add_argument("--name", help="model name for the manifest (default: the --out folder's name)")
    parser.add_argument("--raw", action="store_true", help="export the raw generator instead of its EMA copy")
    parser.add_argument("--default", action="store_true",
                        help="also record this model as the default in the models folder's DEFAULT file")


def run(args) -> int:
    path = export_run(args.run, args.out, name=args.name, use_ema=not args.raw)
    if args.default:
        (path.parent / "DEFAULT").write_text(path.name + "\n")
    manifest = model_folder.read_manifest(path)
    print(f"exported {manifest['name']}: {manifest['resolution']}x{manifest['resolution']}, "
          f"{manifest['parameters']:,} parameters, {len(manifest['attributes'])} attributes -> {path}")
    return 0


def _use_tensorflow_backend():
    # A SavedModel is TensorFlow's format: the generator is rebuilt on the TensorFlow backend whatever trained it.
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise UsageError(f"export needs KERAS_BACKEND=tensorflow (it is {backend!r}): a SavedModel is "
                         "TensorFlow's format. Train on any backend, export on TensorFlow.")
    os.environ["KERAS_BACKEND"] = "tensorflow"


def write_saved_model(generator, config, out_dir: Path, manifest_fields: dict) -> Path:
    """Write ``generator`` (a built Keras model, TensorFlow backend) as a SavedModel plus its manifest."""
    import numpy as np
    import tensorflow as tf

    from training.networks import count_parameters

    latent, a, r = config.latent_size, config.num_attributes, config.resolution

    class FaceGenerator(tf.Module):
        def __init__(self, model):
            super().__init__(name="facegen")
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="noise"),
                                      tf.TensorSpec([None, a], tf.float32, name="attrs")])
        def generate(self, noise, attrs):
            pixels = self.model([noise, attrs], training=False)
            # The contract's pixel rule inside the graph, so every client gets identical pixels.
            return tf.cast(model_folder.pixels_to_uint8(pixels, round=tf.round, clip=tf.clip_by_value), tf.uint8)

        @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="noise"),
                                      tf.TensorSpec([None, a], tf.float32, name="attrs")])
        def serve(self, noise, attrs):
            return {"images": self.generate(noise, attrs)}

    module = FaceGenerator(generator)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then swap, so a failed export never leaves a half model where a good one was.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    # mkdtemp makes the folder private (0700); a model is read by other users (the image's non-root server).
    os.chmod(staging, 0o755)
    try:
        tf.saved_model.save(module, str(staging), signatures={model_folder.GENERATE_SIGNATURE: module.serve})
        manifest = model_folder.build_manifest(
            name=manifest_fields.get("name") or out_dir.name, resolution=r, latent_size=latent,
            attributes=config.attributes, architecture=config.architecture, parameters=count_parameters(generator),
            attribute_frequencies=manifest_fields.get("attribute_frequencies"),
            attribute_table=manifest_fields.get("attribute_table"),
            dataset=manifest_fields.get("dataset"), training=manifest_fields.get("training"),
            metrics=manifest_fields.get("metrics"), created=_now())
        model_folder.write_manifest(staging, manifest)
        # Check the artefact the way serving will use it before it replaces anything.
        loaded = tf.saved_model.load(str(staging))
        probe = loaded.generate(np.zeros((1, latent), np.float32), np.zeros((1, a), np.float32)).numpy()
        if probe.shape != (1, r, r, 3) or probe.dtype != np.uint8:
            raise RuntimeError(f"exported model returned {probe.shape} {probe.dtype}")
        for extra in (model_folder.CARD,):  # keep a hand-kept card across re-exports
            if (out_dir / extra).is_file():
                shutil.copy2(out_dir / extra, staging / extra)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_run(run_dir: Path, out_dir: Path, name: str | None = None, use_ema: bool = True) -> Path:
    """Rebuild the run's generator on the TensorFlow backend, load its checkpoint and export it."""
    _use_tensorflow_backend()
    from training.models import load_run_generator

    generator, config, run_info, meta, group = load_run_generator(run_dir, use_ema)
    training = dict(run_info.get("training", {}))
    training.update(steps=meta["step"], epochs=meta.get("epoch"), images_seen=meta["step"] * config.batch_size,
                    train_seconds=round(meta.get("seconds", 0.0), 1), weights="ema" if group == "g_ema" else "raw",
                    batch_size=config.batch_size, config=config.to_dict())
    fields = {"name": name, "attribute_frequencies": run_info.get("attribute_frequencies", [0.5] * config.num_attributes),
              "attribute_table": run_info.get("attribute_table"),
              "dataset": run_info.get("dataset", {}), "training": training}
    return write_saved_model(generator, config, out_dir, fields)


def export_random_model(out_dir, name="tiny", resolution=32, latent_size=16,
                        attributes=("Male", "Eyeglasses", "Smiling"), seed=0, attribute_table=None) -> Path:
    """An untrained small generator exported with the real export path: for tests and demos of serving.

    The manifest says plainly that it is untrained. ``attribute_table`` (as ``model_folder.attribute_table`` makes
    it) stands in for a training set's attribute rows: written to the manifest, with the frequencies it implies;
    without it the manifest has no table, like exports made before the table existed.
    """
    _use_tensorflow_backend()
    import numpy as np

    from training.config import TrainConfig
    from training.networks import build_generator

    config = TrainConfig(resolution=resolution, latent_size=latent_size, attributes=list(attributes),
                         g_width=8, g_max_width=32, d_width=8, d_max_width=32).validate()
    generator = build_generator(config)
    # Keras' random initialisers are not reproducible across processes here, so every kernel is redrawn from a
    # NumPy stream (scaled by its fan-in); vectors (biases, scales) are constants already. Same seed, same model.
    rng = np.random.RandomState(seed)
    for variable in generator.weights:
        shape = tuple(variable.shape)
        if len(shape) >= 2:
            scale = 1.0 / np.sqrt(np.prod(shape[:-1]))
            variable.assign((scale * rng.standard_normal(shape)).astype(variable.dtype))
    frequencies = [0.5] * len(attributes)
    if attribute_table:
        rows = np.array([[int(c) for c in row] for row in attribute_table["rows"]], np.float64).reshape(
            -1, len(attributes))
        counts = np.asarray(attribute_table["counts"], np.float64)
        frequencies = (counts @ rows / counts.sum()).tolist()
    fields = {"name": name, "attribute_frequencies": frequencies, "attribute_table": attribute_table,
              "dataset": {"name": "none", "synthetic": True, "images": 0,
                          "note": "untrained random weights, made by training.export.export_random_model"},
              "training": {"steps": 0, "note": "untrained"}}
    return write_saved_model(generator, config, Path(out_dir), fields)
