"""The set of models one GAN training run holds: G, D, the EMA copy of G, the encoder E (config.encoder) and their
optimisers."""

import dataclasses

import keras
import numpy as np

from training import checkpoint
from training.networks import build_discriminator, build_encoder, build_generator

GROUP_NAMES = {"g": "generator", "d": "discriminator", "g_ema": "EMA generator", "g_opt": "generator optimiser",
               "d_opt": "discriminator optimiser", "schedule": "D schedule state", "e": "encoder",
               "e_opt": "encoder optimiser"}


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
    # D's running accuracy, which the accuracy-based schedule reads: training state, so it is checkpointed.
    d_accuracy: keras.Variable
    # The encoder and its optimiser, with config.encoder only (checkpoint groups "e" and "e_opt").
    encoder: keras.Model | None = None
    e_optimizer: keras.optimizers.Optimizer | None = None

    def groups(self) -> dict:
        """Every piece of training state, by checkpoint group name, in a fixed order."""
        groups = {"g": self.generator.variables, "d": self.discriminator.variables,
                  "g_ema": self.ema_generator.variables, "g_opt": self.g_optimizer.variables,
                  "d_opt": self.d_optimizer.variables, "schedule": [self.d_accuracy]}
        if self.encoder is not None:
            groups.update(e=self.encoder.variables, e_opt=self.e_optimizer.variables)
        return groups

    def checkpoint_groups(self) -> dict:
        return {name: [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in variables]
                for name, variables in self.groups().items()}

    def load_groups(self, groups: dict) -> None:
        """Load a checkpoint's groups. Groups the models lack (an encoder's, into a config without one) are ignored;
        a group the models need and the checkpoint lacks is a UsageError naming it."""
        for name, variables in self.groups().items():
            if name == "schedule" and name not in groups:
                continue  # a checkpoint from before the schedule state was saved: start it afresh (0.5)
            if name not in groups:
                from training.usage_error import UsageError

                hint = (" (the config has encoder: true, the checkpoint was trained without an encoder; an encoder "
                        "cannot be added to a run: start a new run)") if name in ("e", "e_opt") else ""
                raise UsageError(f"the checkpoint has no {GROUP_NAMES[name]} ({name}/*): it is not a complete "
                                 f"training state{hint}")
            checkpoint.assign(variables, groups[name], GROUP_NAMES[name])


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
    d_accuracy = keras.Variable(0.5, dtype="float32", trainable=False, name="d_accuracy_running")
    encoder = e_optimizer = None
    if config.encoder:
        encoder = build_encoder(config)
        e_optimizer = keras.optimizers.Adam(config.g_lr * config.encoder_lr_ratio, beta_1=config.beta1,
                                            beta_2=config.beta2)
        e_optimizer.build(encoder.trainable_variables)
    return GanModels(generator, discriminator, ema_generator, g_optimizer, d_optimizer, d_accuracy, encoder,
                     e_optimizer)
