"""Training throughput: images per second through the real train step, data pipeline included.

The data pipeline is the one `train` uses: a uint8 image array resident on the device, batches gathered by
index inside the step, flipped and scaled there. Each variant is timed in this one process after a warm-up
(compilation excluded), synchronising on the device before the clock is read.

    KERAS_BACKEND=jax python bench/train_throughput.py --variants facegen:float32,facegen:bfloat16 --batch 512

Prints a table and writes JSON (--json). The seeds' figure (40-70 minutes per CelebA epoch of 202,599
images) is reported as a ratio against each variant's epoch time.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CELEBA_IMAGES = 202_599
SEEDS_EPOCH_MINUTES = (40, 70)


def measure(architecture: str, precision: str, batch: int, steps: int, warmup: int, images: int,
            config_file: str | None) -> dict:
    import keras
    import numpy as np

    from training.config import load_config
    from training.gan_state import build_models
    from training.networks import count_parameters

    overrides = {"batch_size": batch, "mixed_precision": "on" if precision == "bfloat16" else "off"}
    if architecture == "artiface":
        overrides.update(architecture="artiface", resolution=128, latent_size=100, spectral_norm=False,
                         conditioning="acgan", minibatch_std=False)
    config = load_config(config_file if architecture == "facegen" else None, **overrides)
    backend = keras.backend.backend()
    Trainer = __import__(f"training.step_{'jax' if backend == 'jax' else 'tensorflow'}",
                         fromlist=["Trainer"]).Trainer
    rng = np.random.default_rng(0)
    r = config.resolution
    data = rng.integers(0, 256, (images, r, r, 3), dtype=np.uint8)
    attributes = (rng.random((images, config.num_attributes)) < 0.3).astype(np.float32)
    models = build_models(config)
    trainer = Trainer(config, data, attributes, models)

    def run(first, count):
        metrics = None
        for step in range(first, first + count):
            real = rng.integers(0, images, (config.d_steps, batch), dtype=np.int32)
            cond = rng.integers(0, images, (config.d_steps + 1, batch), dtype=np.int32)
            metrics = trainer.train_step(real, cond, step)
        return trainer.to_host(metrics)  # waits for the device

    compile_start = time.perf_counter()
    run(0, warmup)
    compile_seconds = time.perf_counter() - compile_start
    start = time.perf_counter()
    last = run(warmup, steps)
    seconds = time.perf_counter() - start
    rate = steps * batch / seconds
    epoch_seconds = CELEBA_IMAGES / rate
    return {"architecture": architecture, "precision": precision, "batch": batch, "resolution": r,
            "steps": steps, "seconds": round(seconds, 3), "images_per_second": round(rate, 1),
            "celeba_epoch_seconds": round(epoch_seconds, 2),
            "speedup_vs_seeds": [round(m * 60 / epoch_seconds) for m in SEEDS_EPOCH_MINUTES],
            "warmup_seconds": round(compile_seconds, 1), "finite_losses": all(np.isfinite(list(last.values()))),
            "generator_parameters": count_parameters(models.generator),
            "discriminator_parameters": count_parameters(models.discriminator),
            "backend": backend, "device": _device()}


def _device() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return "cpu"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="facegen:float32,facegen:bfloat16",
                        help="comma-separated architecture:precision pairs (facegen|artiface : float32|bfloat16)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
    parser.add_argument("--images", type=int, default=50_000, help="images resident on the device")
    parser.add_argument("--config", help="training config JSON for the facegen variants")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = []
    for variant in args.variants.split(","):
        architecture, precision = variant.split(":")
        result = measure(architecture, precision, args.batch, args.steps, args.warmup, args.images, args.config)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(f"\n{'variant':<22}{'batch':>6}{'images/s':>12}{'CelebA epoch':>14}{'vs seeds (40-70 min)':>24}")
    for r in results:
        low, high = r["speedup_vs_seeds"]
        print(f"{r['architecture'] + ':' + r['precision']:<22}{r['batch']:>6}{r['images_per_second']:>12,.0f}"
              f"{r['celeba_epoch_seconds']:>13.1f}s{f'{low:,}x - {high:,}x':>24}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())
