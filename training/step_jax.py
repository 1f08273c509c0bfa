"""The train step on the JAX backend: Keras models called statelessly inside one jitted function.

Same semantics as step_tensorflow.py (read its docstring, the encoder's terms included): the objectives,
stabilisers and batches are shared. State (weights, optimiser slots, EMA, D's running accuracy, E and its slots)
lives in JAX arrays between steps and is written back
into the Keras variables only for checkpoints and samples. Data stays on the device: the step gathers its batch
from the uint8 image array by index, so the host sends a few KB of indices per step and no pixels.
"""

import jax
import jax.numpy as jnp
import numpy as np

from training import loss, stabilisers
from training.batches import real_batch
from training.gan_state import ema_variables


class StepRng:
    """Random draws for one step, derived from (seed, step, draw number): no RNG state to checkpoint."""

    def __init__(self, seed, step):
        self.key, self.count = jax.random.fold_in(jax.random.key(seed), step), 0

    def _next(self):
        self.count += 1
        return jax.random.fold_in(self.key, self.count)

    def normal(self, shape):
        return jax.random.normal(self._next(), shape, dtype=jnp.float32)

    def uniform(self, shape):
        return jax.random.uniform(self._next(), shape, dtype=jnp.float32)


class Trainer:
    """``rng(seed, step)`` makes the step's random source (tests pass one that replays fixed draws)."""

    def __init__(self, config, images, attributes, models, distribution=None, rng=StepRng):
        if config.fade_in_steps:
            from training.usage_error import UsageError

            raise UsageError("config fade_in_steps: the fade-in is implemented in the TensorFlow train step only; "
                             "train a growing run with KERAS_BACKEND=tensorflow")
        self.config, self.models, self.rng = config, models, rng
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
        self._encode = jax.jit(self._encode_fn)

    # -- state <-> Keras variables -------------------------------------------------------------------------
    def _pairs(self):
        m = self.models
        return {"g": m.generator.trainable_variables, "g_nt": m.generator.non_trainable_variables,
                "d": m.discriminator.trainable_variables, "d_nt": m.discriminator.non_trainable_variables,
                "g_opt": m.g_optimizer.variables, "d_opt": m.d_optimizer.variables,
                "ema": ema_variables(m.ema_generator), "d_accuracy": [m.d_accuracy],
                **({"e": m.encoder.trainable_variables, "e_nt": m.encoder.non_trainable_variables,
                    "e_opt": m.e_optimizer.variables} if m.encoder is not None else {})}

    def push(self):
        """Keras variables -> the JAX state the step works on (after building or loading a checkpoint)."""
        state = {name: [v.value for v in variables] for name, variables in self._pairs().items()}
        # Keras' assign may leave two variables on one buffer (the EMA starts as G); the step donates its
        # state, so every leaf needs a buffer of its own.
        self.state = jax.tree.map(jnp.copy, state)

    def pull(self):
        """The JAX state -> Keras variables (before a checkpoint or export)."""
        for name, variables in self._pairs().items():
            for variable, value in zip(variables, self.state[name]):
                variable.assign(value)

    # -- the step ------------------------------------------------------------------------------------------
    def _d_update(self, state, images, attributes, real_index, cond_index, step, rng):
        config, m = self.config, self.models
        G, D = m.generator, m.discriminator
        real, real_attrs = real_batch(images, attributes, real_index, config, rng)
        cond = jnp.take(attributes, cond_index, axis=0)
        d, d_opt, (running,) = state["d"], state["d_opt"], state["d_accuracy"]

        def d_loss(d_vars, d_nt, g_nt):
            held = {"d": d_nt, "g": g_nt}

            def g_forward(z, a):
                out, held["g"] = G.stateless_call(state["g"], held["g"], [z, a], training=True)
                return out

            def d_forward(x, a):
                out, held["d"] = D.stateless_call(d_vars, held["d"], [x, a], training=True)
                return out

            value, parts = loss.discriminator_objective(g_forward, d_forward, real, real_attrs, cond, step, config,
                                                        rng)
            return value, (held["d"], held["g"], parts)

        (_, (d_nt, g_nt, parts)), grads = jax.value_and_grad(d_loss, has_aux=True)(d, state["d_nt"], state["g_nt"])
        new_d, new_d_opt = m.d_optimizer.stateless_apply(d_opt, grads, d)
        update = stabilisers.d_may_update(running, config)
        new_d = [jnp.where(update, n, o) for n, o in zip(new_d, d)]
        new_d_opt = [jnp.where(update, n, o) for n, o in zip(new_d_opt, d_opt)]
        running = stabilisers.next_running_accuracy(running, parts["d_accuracy"])
        return {**state, "d": new_d, "d_opt": new_d_opt, "d_nt": d_nt, "g_nt": g_nt, "d_accuracy": [running]}, parts

    def _g_update(self, state, images, attributes, cond_index, real_index, step, rng):
        config, m = self.config, self.models
        G, D, E = m.generator, m.discriminator, m.encoder
        cond = jnp.take(attributes, cond_index, axis=0)

        def g_loss(g_vars, g_nt, e_vars, e_nt):
            held = {"g": g_nt, "e": e_nt}

            def g_forward(z, a):
                out, held["g"] = G.stateless_call(g_vars, held["g"], [z, a], training=True)
                return out

            def d_forward(x, a):
                out, _ = D.stateless_call(state["d"], state["d_nt"], [x, a], training=False)
                return out

            if E is None:
                value, parts = loss.generator_objective(g_forward, d_forward, cond, step, config, rng)
                return value, (held, parts)

            def e_forward(x):
                out, held["e"] = E.stateless_call(e_vars, held["e"], x, training=True)
                return out

            def d_features(x, a):
                out, _ = D.stateless_call(state["d"], state["d_nt"], [x, a], training=False, return_features=True)
                return out[2]

            value, parts = loss.generator_encoder_objective(
                g_forward, d_forward, e_forward, lambda r: real_batch(images, attributes, real_index, config, r), cond,
                step, config, rng, d_features)
            return value, (held, parts)

        e_vars, e_nt = (state["e"], state["e_nt"]) if E is not None else ([], [])
        (_, (held, parts)), (grads, e_grads) = jax.value_and_grad(g_loss, argnums=(0, 2), has_aux=True)(
            state["g"], state["g_nt"], e_vars, e_nt)
        g, g_opt = m.g_optimizer.stateless_apply(state["g_opt"], grads, state["g"])
        g_nt = held["g"]
        decay = stabilisers.ema_decay(config, step)
        ema = [stabilisers.ema_update(e, v, decay) for e, v in zip(state["ema"], list(g) + list(g_nt))]
        state = {**state, "g": g, "g_nt": g_nt, "g_opt": g_opt, "ema": ema}
        if E is not None:
            e, e_opt = m.e_optimizer.stateless_apply(state["e_opt"], e_grads, state["e"])
            state.update(e=e, e_opt=e_opt, e_nt=held["e"])
        return state, parts

    def _train_step(self, state, images, attributes, real_index, cond_index, step):
        config = self.config
        rng = self.rng(config.seed, step)
        metrics = {}
        for k in range(config.d_steps):
            state, parts = self._d_update(state, images, attributes, real_index[k], cond_index[k], step, rng)
            metrics.update(parts)
        state, parts = self._g_update(state, images, attributes, cond_index[config.d_steps], real_index[0], step, rng)
        metrics.update(parts)
        metrics["d_accuracy_running"] = state["d_accuracy"][0]
        return state, metrics

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

    def _encode_fn(self, e, e_nt, images):
        out, _ = self.models.encoder.stateless_call(e, e_nt, images, training=False)
        return out

    def encode(self, images: np.ndarray):
        """(z estimate, attribute logits) of images in [-1, 1] from the encoder (float32 numpy)."""
        z, logits = self._encode(self.state["e"], self.state["e_nt"], jnp.asarray(images, jnp.float32))
        return np.asarray(z, dtype=np.float32), np.asarray(logits, dtype=np.float32)
