"""The train step on the TensorFlow backend (the default for users and CI): GradientTape in a tf.function.

The objectives (loss.py), stabilisers (stabilisers.py) and batches (batches.py) are shared with the JAX step;
Keras variables are the state, updated in place. What one step does, on both backends:
  for each of d_steps: D's loss on a real batch and fakes (D called with training=True: its spectral-norm vectors
  advance), D's update unless the accuracy schedule holds it, D's running accuracy;
  then G's loss through D called with training=False (D's state, spectral-norm vectors included, is D's own and
  does not move in G's step), G's update, and the EMA of G.
With the encoder E (config.encoder), G's step also trains E, on the real batch of the step's first D update
(mirrored afresh) and on G's own fakes of this step (loss.generator_encoder_objective, one scalar differentiated
with respect to G's and E's weights together):
  reconstruction |G(E_z(x), a) - x| (l1 or l2)  updates E and G
  feature loss on D's features (optional)        updates E and G (D read with training=False, D not updated)
  attribute BCE of E_a(x) against a              updates E
  latent cycle |E_z(G(z, a)) - z|^2              updates E only (G's fake is held fixed)
so G's update is its adversarial and auxiliary terms plus reconstruction (and feature) loss, E's is every encoder
term; D's step is unchanged. E has its own Adam at encoder_lr_ratio * g_lr, no EMA (it is exported as trained).
"""

import numpy as np
import tensorflow as tf

from training import loss, stabilisers
from training.batches import real_batch
from training.grow import fade_alpha, fade_real
from training.gan_state import ema_variables


class StepRng:
    """Stateless draws from (seed, step, draw number): nothing to checkpoint, and a resumed step draws the same."""

    def __init__(self, seed, step):
        self.seed, self.step, self.count = seed, tf.cast(step, tf.int64), 0

    def _next(self):
        self.count += 1
        return tf.stack([tf.constant(self.seed, tf.int64), self.step * 1024 + self.count])

    def normal(self, shape):
        return tf.random.stateless_normal(shape, seed=self._next(), dtype=tf.float32)

    def uniform(self, shape):
        return tf.random.stateless_uniform(shape, seed=self._next(), dtype=tf.float32)


class Trainer:
    """``rng(seed, step)`` makes the step's random source (tests pass one that replays fixed draws)."""

    def __init__(self, config, images, attributes, models, distribution=None, rng=StepRng):
        if distribution is not None:
            raise ValueError("data-parallel training uses the JAX backend (KERAS_BACKEND=jax)")
        self.config, self.models, self.rng = config, models, rng
        self.images = tf.constant(images)
        self.attributes = tf.constant(attributes)
        self._step = tf.function(self._train_step)
        self._generate = tf.function(lambda z, a: models.ema_generator([z, a], training=False))
        if models.encoder is not None:
            self._encode = tf.function(lambda x: models.encoder(x, training=False))

    def push(self):  # Keras variables are the state on this backend
        pass

    def pull(self):
        pass

    def _d_update(self, real_index, cond_index, step, rng):
        config, m = self.config, self.models
        G, D = m.generator, m.discriminator
        real, real_attrs = real_batch(self.images, self.attributes, real_index, config, rng)
        real = fade_real(real, step, config)
        cond = tf.gather(self.attributes, cond_index)
        with tf.GradientTape() as tape:
            value, parts = loss.discriminator_objective(
                lambda z, a: G([z, a], training=True), lambda x, a: D([x, a], training=True),
                real, real_attrs, cond, step, config, rng)
        grads = tape.gradient(value, D.trainable_variables)

        def apply():
            m.d_optimizer.apply_gradients(zip(grads, D.trainable_variables))
            return tf.constant(True)

        may_update = stabilisers.d_may_update(m.d_accuracy.value, config)
        if may_update is True:  # the schedule is off
            apply()
        else:
            tf.cond(may_update, apply, lambda: tf.constant(False))
        m.d_accuracy.assign(stabilisers.next_running_accuracy(m.d_accuracy.value, parts["d_accuracy"]))
        return parts

    def _g_update(self, cond_index, step, rng, real_index=None):
        config, m = self.config, self.models
        G, D, E = m.generator, m.discriminator, m.encoder
        cond = tf.gather(self.attributes, cond_index)
        g_forward = lambda z, a: G([z, a], training=True)  # noqa: E731
        d_forward = lambda x, a: D([x, a], training=False)  # noqa: E731
        if E is None:
            with tf.GradientTape() as tape:
                value, parts = loss.generator_objective(g_forward, d_forward, cond, step, config, rng)
            grads = tape.gradient(value, G.trainable_variables)
        else:
            with tf.GradientTape() as tape:
                value, parts = loss.generator_encoder_objective(
                    g_forward, d_forward, lambda x: E(x, training=True),
                    lambda r: self._faded_real(real_index, r, step), cond, step, config,
                    rng, lambda x, a: D([x, a], training=False, return_features=True)[2])
            n_g = len(G.trainable_variables)
            all_grads = tape.gradient(value, G.trainable_variables + E.trainable_variables)
            grads, e_grads = all_grads[:n_g], all_grads[n_g:]
            m.e_optimizer.apply_gradients(zip(e_grads, E.trainable_variables))
        if config.d_warmup_steps:  # zero gradients leave Adam's fresh moments, so G's weights, unmoved
            held = tf.cast(step < config.d_warmup_steps, tf.float32)
            grads = [g * (1.0 - held) for g in grads]
        m.g_optimizer.apply_gradients(zip(grads, G.trainable_variables))
        decay = stabilisers.ema_decay(self.config, step)
        for ema_variable, variable in zip(ema_variables(m.ema_generator), ema_variables(G)):
            ema_variable.assign(stabilisers.ema_update(ema_variable.value, variable.value, decay))
        return parts

    def _faded_real(self, index, rng, step):
        images, attrs = real_batch(self.images, self.attributes, index, self.config, rng)
        return fade_real(images, step, self.config), attrs

    def _train_step(self, real_index, cond_index, step):
        rng = self.rng(self.config.seed, step)
        if self.config.fade_in_steps:  # G and its EMA copy blend in the new top block by the step's alpha
            alpha = fade_alpha(step, self.config)
            self.models.generator.fade.assign(alpha)
            self.models.ema_generator.fade.assign(alpha)
        metrics = {}
        for k in range(self.config.d_steps):
            metrics.update(self._d_update(real_index[k], cond_index[k], step, rng))
        metrics.update(self._g_update(cond_index[self.config.d_steps], step, rng, real_index[0]))
        metrics["d_accuracy_running"] = self.models.d_accuracy.value
        return metrics

    def train_step(self, real_index: np.ndarray, cond_index: np.ndarray, step: int):
        return self._step(tf.constant(real_index), tf.constant(cond_index), tf.constant(step, tf.int64))

    @staticmethod
    def to_host(metrics) -> dict:
        return {k: float(v) for k, v in metrics.items()}

    def generate(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.asarray(self._generate(tf.constant(z), tf.constant(a)), dtype=np.float32)

    def encode(self, images: np.ndarray):
        """(z estimate, attribute logits) of images in [-1, 1] from the encoder (float32 numpy)."""
        z, logits = self._encode(tf.constant(images, tf.float32))
        return np.asarray(z, dtype=np.float32), np.asarray(logits, dtype=np.float32)
