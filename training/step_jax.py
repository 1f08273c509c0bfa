"""The train step on the JAX backend: Keras models called statelessly inside one jitted function.

State (weights, optimiser slots, EMA) lives in JAX arrays between steps and is written back into the Keras
variables only for checkpoints and samples. Data stays on the device: the step gathers its batch from the
uint8 image array by index, so the host sends a few KB of indices per step and no pixels.
"""

import jax
import jax.numpy as jnp
import numpy as np

from training import loss
from training.models import ema_variables


class _Rng:
    """Random draws for one step, derived from (seed, step, draw number): no RNG state to checkpoint."""

    def __init__(self, key):
        self.key, self.count = key, 0

    def _next(self):
        self.count += 1
        return jax.random.fold_in(self.key, self.count)

    def normal(self, shape):
        return jax.random.normal(self._next(), shape, dtype=jnp.float32)

    def uniform(self, shape):
        return jax.random.uniform(self._next(), shape, dtype=jnp.float32)


class Trainer:
    def __init__(self, config, images, attributes, models, distribution=None):
        self.config, self.models = config, models
        self.distribution = distribution
        if distribution is not None:
            from jax.sharding import NamedSharding, PartitionSpec

            mesh = distribution.device_mesh.backend_mesh
            replicated = NamedSharding(mesh, PartitionSpec())
            # Indices are [draws, batch]: shard the batch axis, so each device gathers and trains its share.
            self._index_sharding = NamedSharding(mesh, PartitionSpec(None, mesh.axis_names[0]))
            self.images = jax.device_put(images, replicated)
            self.attributes = jax.device_put(attributes, replicated)
        else:
            self._index_sharding = None
            self.images, self.attributes = jnp.asarray(images), jnp.asarray(attributes)
        self.push()
        self._step = jax.jit(self._train_step, donate_argnums=(0,))
        self._generate = jax.jit(self._generate_fn)

    # -- state <-> Keras variables -------------------------------------------------------------------------
    def push(self):
        """Keras variables -> the JAX state the step works on (after building or loading a checkpoint)."""
        m = self.models
        self.state = {
            "g": [v.value for v in m.generator.trainable_variables],
            "g_nt": [v.value for v in m.generator.non_trainable_variables],
            "d": [v.value for v in m.discriminator.trainable_variables],
            "d_nt": [v.value for v in m.discriminator.non_trainable_variables],
            "g_opt": [v.value for v in m.g_optimizer.variables],
            "d_opt": [v.value for v in m.d_optimizer.variables],
            "ema": [v.value for v in ema_variables(m.ema_generator)],
            "d_accuracy": jnp.float32(0.5),
        }
        # Keras' assign may leave two variables on one buffer (the EMA starts as G); the step donates its
        # state, so every leaf needs a buffer of its own.
        self.state = jax.tree.map(jnp.copy, self.state)

    def pull(self):
        """The JAX state -> Keras variables (before a checkpoint or export)."""
        m, s = self.models, self.state
        pairs = [(m.generator.trainable_variables, s["g"]), (m.generator.non_trainable_variables, s["g_nt"]),
                 (m.discriminator.trainable_variables, s["d"]), (m.discriminator.non_trainable_variables, s["d_nt"]),
                 (m.g_optimizer.variables, s["g_opt"]), (m.d_optimizer.variables, s["d_opt"]),
                 (ema_variables(m.ema_generator), s["ema"])]
        for variables, values in pairs:
            for variable, value in zip(variables, values):
                variable.assign(value)

    # -- the step ------------------------------------------------------------------------------------------
    def _train_step(self, state, images, attributes, real_index, cond_index, step):
        config, m = self.config, self.models
        G, D = m.generator, m.discriminator
        key = jax.random.fold_in(jax.random.key(config.seed), step)
        rng = _Rng(key)
        g, g_nt, d, d_nt = state["g"], state["g_nt"], state["d"], state["d_nt"]
        d_opt, d_accuracy = state["d_opt"], state["d_accuracy"]
        metrics = {}

        for k in range(config.d_steps):
            real, real_attrs = loss.real_batch(images, attributes, real_index[k], config, rng)
            cond = jnp.take(attributes, cond_index[k], axis=0)
            loss_key = rng._next()

            def d_loss(d_vars, d_nt_in, g_nt_in):
                held = {"d": d_nt_in, "g": g_nt_in}

                def g_forward(z, a):
                    out, held["g"] = G.stateless_call(g, held["g"], [z, a], training=True)
                    return out

                def d_forward(x, a):
                    out, held["d"] = D.stateless_call(d_vars, held["d"], [x, a], training=True)
                    return out

                value, parts = loss.discriminator_objective(g_forward, d_forward, real, real_attrs, cond, step,
                                                            config, _Rng(loss_key))
                return value, (held["d"], held["g"], parts)

            (_, (d_nt, g_nt, parts)), grads = jax.value_and_grad(d_loss, has_aux=True)(d, d_nt, g_nt)
            new_d, new_d_opt = m.d_optimizer.stateless_apply(d_opt, grads, d)
            if config.d_accuracy_threshold > 0:
                # Accuracy-based schedule: while D wins too easily, hold its weights and let G catch up.
                update = d_accuracy < config.d_accuracy_threshold
                new_d = [jnp.where(update, n, o) for n, o in zip(new_d, d)]
                new_d_opt = [jnp.where(update, n, o) for n, o in zip(new_d_opt, d_opt)]
            d, d_opt = new_d, new_d_opt
            d_accuracy = 0.98 * d_accuracy + 0.02 * parts["d_accuracy"]
            metrics.update(parts)

        cond = jnp.take(attributes, cond_index[config.d_steps], axis=0)
        g_key = rng._next()

        def g_loss(g_vars, g_nt_in):
            held = {"g": g_nt_in}

            def g_forward(z, a):
                out, held["g"] = G.stateless_call(g_vars, held["g"], [z, a], training=True)
                return out

            def d_forward(x, a):
                out, _ = D.stateless_call(d, d_nt, [x, a], training=True)  # D's state is not advanced by G's step
                return out

            value, parts = loss.generator_objective(g_forward, d_forward, cond, config, _Rng(g_key))
            return value, (held["g"], parts)

        (_, (g_nt, parts)), grads = jax.value_and_grad(g_loss, has_aux=True)(g, g_nt)
        g, g_opt = m.g_optimizer.stateless_apply(state["g_opt"], grads, g)
        metrics.update(parts)

        decay = loss.ema_decay(config, step)
        ema = [decay * e + (1.0 - decay) * v for e, v in zip(state["ema"], list(g) + list(g_nt))]
        metrics["d_accuracy_running"] = d_accuracy
        new_state = {"g": g, "g_nt": g_nt, "d": d, "d_nt": d_nt, "g_opt": g_opt, "d_opt": d_opt, "ema": ema,
                     "d_accuracy": d_accuracy}
        return new_state, metrics

    def train_step(self, real_index: np.ndarray, cond_index: np.ndarray, step: int):
        if self._index_sharding is not None:
            real_index = jax.device_put(real_index, self._index_sharding)
            cond_index = jax.device_put(cond_index, self._index_sharding)
        self.state, metrics = self._step(self.state, self.images, self.attributes, real_index, cond_index,
                                         jnp.int32(step))
        return metrics

    @staticmethod
    def to_host(metrics) -> dict:
        return {k: float(v) for k, v in jax.device_get(metrics).items()}

    # -- sampling ------------------------------------------------------------------------------------------
    def _generate_fn(self, ema, z, a):
        m = self.models.ema_generator
        n_train = len(m.trainable_variables)
        out, _ = m.stateless_call(ema[:n_train], ema[n_train:], [z, a], training=False)
        return out

    def generate(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Images in [-1, 1] from the EMA generator (float32 numpy)."""
        return np.asarray(self._generate(self.state["ema"], jnp.asarray(z), jnp.asarray(a)), dtype=np.float32)
