"""The set of models one GAN training run holds: G, D, the EMA copy of G and their optimisers."""

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

from training import checkpoint
from training.networks import build_discriminator, build_generator


def ema_variables(model):
    """A generator's variables in the order the EMA is kept in: trainable, then non-trainable."""
    return list(model.trainable_variables) + list(model.non_trainable_variables)


@dataclasses.dataclass
class GanModels:
    generator: keras.Model
    discriminator: keras.Model
    ema_generator: keras.Model
    g_optimizer: keras.optimizers.Optimizer
    d_optimizer: keras.optimizers.Optimizer

    def checkpoint_groups(self) -> dict:
        to_numpy = lambda variables: [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in variables]
        return {"g": to_numpy(self.generator.variables), "d": to_numpy(self.discriminator.variables),
                "g_ema": to_numpy(self.ema_generator.variables),
                "g_opt": to_numpy(self.g_optimizer.variables), "d_opt": to_numpy(self.d_optimizer.variables)}

    def load_groups(self, groups: dict) -> None:
        checkpoint.assign(self.generator.variables, groups["g"], "generator")
        checkpoint.assign(self.discriminator.variables, groups["d"], "discriminator")
        checkpoint.assign(self.ema_generator.variables, groups["g_ema"], "EMA generator")
        checkpoint.assign(self.g_optimizer.variables, groups["g_opt"], "generator optimiser")
        checkpoint.assign(self.d_optimizer.variables, groups["d_opt"], "discriminator optimiser")


def use_mixed_precision(config) -> bool:
    """bfloat16 compute on a GPU (float32 weights), float32 on the CPU where bfloat16 is slow."""
    if config.mixed_precision != "auto":
        return config.mixed_precision == "on"
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.devices()[0].platform == "gpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def build_models(config) -> GanModels:
    """Build every model and optimiser slot up front, so a checkpoint can be loaded into them at once."""
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy("mixed_bfloat16" if use_mixed_precision(config) else "float32")
    generator = build_generator(config)
    discriminator = build_discriminator(config)
    ema_generator = build_generator(config)
    for target, source in zip(ema_generator.variables, generator.variables):
        target.assign(source.value)
    g_optimizer = keras.optimizers.Adam(config.g_lr, beta_1=config.beta1, beta_2=config.beta2)
    d_optimizer = keras.optimizers.Adam(config.d_lr, beta_1=config.beta1, beta_2=config.beta2)
    g_optimizer.build(generator.trainable_variables)
    d_optimizer.build(discriminator.trainable_variables)
    return GanModels(generator, discriminator, ema_generator, g_optimizer, d_optimizer)


def load_run_generator(run_dir, use_ema: bool = True):
    """(generator, config, run_info, meta, group) from a run's latest checkpoint, on the active Keras backend.

    ``group`` is "g_ema" (the EMA copy, what samples and exports use) unless the run has none or use_ema is off.
    """
    from training.config import load_config
    from training.errors import UsageError

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"--run: {run_dir} is not a training run (config.json is missing)")
    config = load_config(run_dir / "config.json")
    run_info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    groups, meta = checkpoint.load_state(run_dir)
    group = "g_ema" if use_ema and groups.get("g_ema") else "g"
    generator = build_generator(config)
    checkpoint.assign(generator.variables, groups[group], f"generator ({group})")
    return generator, config, run_info, meta, group
