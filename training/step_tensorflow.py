"""The train step on the TensorFlow backend (the default for users and CI): GradientTape in a tf.function.

Same objectives (training/loss.py) and the same data-on-device gather as the JAX step; Keras variables are
the state, updated in place.
"""

import numpy as np
import tensorflow as tf

from training import loss
from training.models import ema_variables


class _Rng:
    """Stateless draws from (seed, step, draw number), like the JAX step: nothing to checkpoint."""

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
    def __init__(self, config, images, attributes, models, distribution=None):
        if distribution is not None:
            raise ValueError("data-parallel training uses the JAX backend (KERAS_BACKEND=jax)")
        self.config, self.models = config, models
        self.images = tf.constant(images)
        self.attributes = tf.constant(attributes)
        self.d_accuracy = tf.Variable(0.5, trainable=False, dtype=tf.float32)
        self._step = tf.function(self._train_step)
        self._generate = tf.function(lambda z, a: models.ema_generator([z, a], training=False))

    def push(self):  # Keras variables are the state on this backend
        pass

    def pull(self):
        pass

    def _train_step(self, real_index, cond_index, step):
        config, m = self.config, self.models
        G, D = m.generator, m.discriminator
        rng = _Rng(config.seed, step)
        metrics = {}
        for k in range(config.d_steps):
            real, real_attrs = loss.real_batch(self.images, self.attributes, real_index[k], config, rng)
            cond = tf.gather(self.attributes, cond_index[k])
            with tf.GradientTape() as tape:
                value, parts = loss.discriminator_objective(
                    lambda z, a: G([z, a], training=True), lambda x, a: D([x, a], training=True),
                    real, real_attrs, cond, step, config, rng)
            grads = tape.gradient(value, D.trainable_variables)
            if config.d_accuracy_threshold > 0:
                # Accuracy-based schedule: while D wins too easily, hold its weights and let G catch up.
                def update_d(grads=grads):
                    m.d_optimizer.apply_gradients(zip(grads, D.trainable_variables))
                    return tf.constant(True)

                tf.cond(self.d_accuracy < config.d_accuracy_threshold, update_d, lambda: tf.constant(False))
            else:
                m.d_optimizer.apply_gradients(zip(grads, D.trainable_variables))
            self.d_accuracy.assign(0.98 * self.d_accuracy + 0.02 * parts["d_accuracy"])
            metrics.update(parts)

        cond = tf.gather(self.attributes, cond_index[config.d_steps])
        with tf.GradientTape() as tape:
            value, parts = loss.generator_objective(
                lambda z, a: G([z, a], training=True), lambda x, a: D([x, a], training=True), cond, config, rng)
        grads = tape.gradient(value, G.trainable_variables)
        m.g_optimizer.apply_gradients(zip(grads, G.trainable_variables))
        metrics.update(parts)

        decay = loss.ema_decay(config, step)
        for ema_variable, variable in zip(ema_variables(m.ema_generator), ema_variables(G)):
            ema_variable.assign(decay * ema_variable + (1.0 - decay) * variable)
        metrics["d_accuracy_running"] = self.d_accuracy.read_value()
        return metrics

    def train_step(self, real_index: np.ndarray, cond_index: np.ndarray, step: int):
        return self._step(tf.constant(real_index), tf.constant(cond_index), tf.constant(step, tf.int64))

    @staticmethod
    def to_host(metrics) -> dict:
        return {k: float(v) for k, v in metrics.items()}

    def generate(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.asarray(self._generate(tf.constant(z), tf.constant(a)), dtype=np.float32)
