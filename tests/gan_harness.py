"""Small GAN set-ups shared by the maths tests, importable on either Keras backend (the JAX side runs in a
subprocess: a process has one Keras backend).

ReplayRng replaces the step's random source with a NumPy stream, so the TensorFlow and the JAX step see the same
noise, flips and mirrors and can be compared number for number.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SMALL = {
    "resolution": 32, "latent_size": 8, "attributes": ["Male", "Smiling"], "g_width": 4, "g_max_width": 16,
    "d_width": 4, "d_max_width": 16, "batch_size": 4, "ema_start": 0, "ema_decay": 0.9, "label_smoothing": 0.1,
}


class ReplayRng:
    """Draws from np.random.RandomState(seed) in call order, as backend tensors (constants inside a traced step)."""

    def __init__(self, seed, step):
        self.stream = np.random.RandomState(seed)

    def normal(self, shape):
        from keras import ops

        return ops.convert_to_tensor(self.stream.standard_normal(tuple(int(s) for s in shape)).astype(np.float32))

    def uniform(self, shape):
        from keras import ops

        return ops.convert_to_tensor(self.stream.random_sample(tuple(int(s) for s in shape)).astype(np.float32))


def config_of(**overrides):
    from training.config import TrainConfig

    return TrainConfig(**{**SMALL, **overrides}).validate()


def tiny_data(config, count=16, seed=0):
    """uint8 images and 0/1 attributes: random pixels, for steps whose numbers matter and whose pictures don't."""
    rng = np.random.RandomState(seed)
    r = config.resolution
    images = rng.randint(0, 256, (count, r, r, 3)).astype(np.uint8)
    attributes = (rng.random_sample((count, config.num_attributes)) < 0.5).astype(np.float32)
    return images, attributes


def colour_data(config, count=64, seed=0, shades=False):
    """Images whose colour is decided by the first attribute: on -> reddish, off -> bluish (plus texture noise).

    ``shades``: each image also gets a brightness of its own (x0.2 .. x1, drawn after the texture), something only
    the latent code can carry: the encoder tests rebuild it from E's code (the default draws are unchanged)."""
    rng = np.random.RandomState(seed)
    r = config.resolution
    attributes = np.zeros((count, config.num_attributes), np.float32)
    attributes[:, 0] = np.arange(count) % 2
    base = np.where(attributes[:, :1, None, None] > 0, [[[[200, 50, 50]]]], [[[[50, 50, 200]]]])
    texture = rng.normal(0, 20, (count, r, r, 3))
    if shades:
        base = base * rng.uniform(0.2, 1.0, (count, 1, 1, 1))
    images = np.clip(base + texture, 0, 255).astype(np.uint8)
    return images, attributes


def trainer_for(config, images, attributes, groups=None, rng=None):
    """(trainer, models) on the active backend, weights from ``groups`` (checkpoint arrays) when given."""
    import keras

    from training.gan_state import build_models

    models = build_models(config)
    if groups is not None:
        models.load_groups(groups)
    if keras.backend.backend() == "jax":
        from training.step_jax import StepRng, Trainer
    else:
        from training.step_tensorflow import StepRng, Trainer
    return Trainer(config, images, attributes, models, rng=rng or StepRng), models


def indices(config, count, seed=0):
    rng = np.random.RandomState(seed + 1)
    real = rng.randint(0, count, (config.d_steps, config.batch_size)).astype(np.int32)
    cond = rng.randint(0, count, (config.d_steps + 1, config.batch_size)).astype(np.int32)
    return real, cond


def one_step(config, groups, step=0):
    """One replayed train step from ``groups``: (metrics, groups after). Backend: whichever Keras runs on."""
    images, attributes = tiny_data(config)
    trainer, models = trainer_for(config, images, attributes, groups, ReplayRng)
    real, cond = indices(config, len(images))
    metrics = trainer.to_host(trainer.train_step(real, cond, step))
    trainer.pull()
    return metrics, models.checkpoint_groups()


def colour_gap(config, steps):
    """Train on colour_data for ``steps``; -> mean (red - blue) of G's faces with the attribute on minus off."""
    images, attributes = colour_data(config)
    trainer, _ = trainer_for(config, images, attributes)
    rng = np.random.RandomState(5)
    for step in range(steps):
        real = rng.randint(0, len(images), (config.d_steps, config.batch_size)).astype(np.int32)
        cond = rng.randint(0, len(images), (config.d_steps + 1, config.batch_size)).astype(np.int32)
        trainer.train_step(real, cond, step)
    z = np.random.RandomState(9).standard_normal((64, config.latent_size)).astype(np.float32)
    gaps = []
    for value in (1.0, 0.0):
        a = np.zeros((64, config.num_attributes), np.float32)
        a[:, 0] = value
        faces = trainer.generate(z, a)
        gaps.append(float(np.mean(faces[..., 0] - faces[..., 2])))
    return gaps[0] - gaps[1]


def encoder_learning(config, steps, count=64):
    """Train with the encoder on shaded colour data for ``steps``; -> what E and G learned, measured on images of
    the same kind that training never saw:

    attribute_confidence  E's mean probability of each image's true colour attribute (0.5: nothing learned)
    reconstruction_before / _after  mean |G(E_z(x), E_a(x) > 0) - x| per pixel in [-1, 1] units, before and after
        training: the photo rebuilt from what E found, its code and its attributes, as an edit starts from it
    """
    from facegen.model_folder import from_uint8

    images, attributes = colour_data(config, count, shades=True)
    held, held_attributes = colour_data(config, 32, seed=1, shades=True)
    x = from_uint8(held)
    trainer, _ = trainer_for(config, images, attributes)

    def reconstruction():
        z, logits = trainer.encode(x)
        return float(np.mean(np.abs(trainer.generate(z, (logits > 0).astype(np.float32)) - x)))

    result = {"reconstruction_before": reconstruction()}
    rng = np.random.RandomState(5)
    for step in range(steps):
        real = rng.randint(0, len(images), (config.d_steps, config.batch_size)).astype(np.int32)
        cond = rng.randint(0, len(images), (config.d_steps + 1, config.batch_size)).astype(np.int32)
        trainer.train_step(real, cond, step)
    p = 1.0 / (1.0 + np.exp(-trainer.encode(x)[1][:, 0]))
    result["attribute_confidence"] = float(np.mean(np.where(held_attributes[:, 0] > 0, p, 1.0 - p)))
    result["reconstruction_after"] = reconstruction()
    return result


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def bce(logits, targets):
    """Cross-entropy written from its definition, not from the code under test."""
    p = sigmoid(logits)
    targets = np.asarray(targets, np.float64)
    return float(np.mean(-(targets * np.log(p) + (1 - targets) * np.log(1 - p))))


def largest_change(before, after, group):
    """The largest absolute change of any weight in checkpoint group ``group`` between two checkpoint_groups()."""
    return max(float(np.max(np.abs(a - b))) for a, b in zip(before[group], after[group]) if a.size)


def run_jax(*args, timeout=600):
    """This file's command line (below) on the JAX backend in a subprocess (a process has one Keras backend): stdout."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, __file__, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def save_groups(path, groups):
    np.savez(path, **{f"{name}/{i}": v for name, values in groups.items() for i, v in enumerate(values)})


def load_groups(path):
    with np.load(path) as archive:
        groups = {}
        for key in archive.files:
            name, index = key.rsplit("/", 1)
            groups.setdefault(name, {})[int(index)] = archive[key]
    return {name: [values[i] for i in range(len(values))] for name, values in groups.items()}


if __name__ == "__main__":  # python gan_harness.py one-step CONFIG_JSON GROUPS_IN OUT | colour-gap CONFIG_JSON STEPS
    #                          | encoder-learning CONFIG_JSON STEPS
    command, config_json = sys.argv[1], json.loads(sys.argv[2])
    if command == "one-step":
        metrics, after = one_step(config_of(**config_json), load_groups(sys.argv[3]))
        save_groups(sys.argv[4], after)
        Path(sys.argv[4] + ".json").write_text(json.dumps(metrics))
    elif command == "colour-gap":
        print(json.dumps({"gap": colour_gap(config_of(**config_json), int(sys.argv[3]))}))
    elif command == "encoder-learning":
        print(json.dumps(encoder_learning(config_of(**config_json), int(sys.argv[3]))))
    elif command == "initial-weights":
        from training.gan_state import build_models

        import hashlib

        groups = build_models(config_of(**config_json)).checkpoint_groups()
        print(json.dumps({name: [hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for v in values]
                          for name, values in groups.items()}))
