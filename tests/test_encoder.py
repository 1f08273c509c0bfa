"""The encoder E (config.encoder): each loss term against a hand-computed value, which networks each term reaches,
one real step updating E (and G through reconstruction only), E's checkpoint round trip by weights, the TensorFlow
and JAX steps agreeing with E on, a short learning test, and the export's encode function and manifest object.

Every test here fails when the AE path is broken: a term dropped or unweighted, E not updated, the cycle's gradient
cut off from E or leaking into G, E missing from checkpoints, the pixel rule wrong in the exported graph.
"""

import json

import numpy as np
import pytest
from keras import ops

from tests import gan_harness
from tests.gan_harness import ReplayRng, config_of
from tests.test_gan_maths import _bce, _changed, _jax
from training import loss

ENCODER = {"encoder": True, "reconstruction_weight": 0.5, "encoder_attribute_weight": 2.0, "cycle_weight": 3.0}


# -- the terms, by hand ------------------------------------------------------------------------------------------
REBUILT = np.array([[0.5, -0.25], [1.0, 0.0]], np.float32)
REAL = np.array([[0.0, 0.25], [-1.0, 0.5]], np.float32)


def test_reconstruction_loss_is_mean_absolute_or_mean_squared_pixel_error():
    rebuilt, real = ops.convert_to_tensor(REBUILT), ops.convert_to_tensor(REAL)
    # |d| = 0.5, 0.5, 2, 0.5 -> 3.5 / 4; d^2 = 0.25, 0.25, 4, 0.25 -> 4.75 / 4
    assert float(loss.reconstruction_loss(rebuilt, real, config_of(encoder=True))) == pytest.approx(0.875, rel=1e-6)
    l2 = config_of(encoder=True, reconstruction_loss="l2")
    assert float(loss.reconstruction_loss(rebuilt, real, l2)) == pytest.approx(1.1875, rel=1e-6)


def test_latent_cycle_loss_is_mean_squared_error_of_the_code():
    estimate, z = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32), np.array([[0.0, 2.0], [2.0, -1.0]], np.float32)
    value = float(loss.latent_cycle_loss(ops.convert_to_tensor(estimate), ops.convert_to_tensor(z)))
    assert value == pytest.approx((1.0 + 0.0 + 4.0 + 0.0) / 4, rel=1e-6)


# Stand-ins whose outputs are written out in NumPy below: G paints each image the value z0 + 0.5 a0; E reads an
# image's mean m as the code (m, 2m, ..., 8m) and the attribute logits (3m, -m).
def _g(z, a):
    value = ops.cast(z[:, :1], "float32") + 0.5 * ops.cast(a[:, :1], "float32")
    return ops.broadcast_to(value[:, :, None, None], (ops.shape(z)[0], 4, 4, 3))


def _e(images):
    m = ops.mean(ops.cast(images, "float32"), axis=(1, 2, 3))
    return m[:, None] * ops.arange(1, 9, dtype="float32")[None, :], ops.stack([3.0 * m, -m], axis=1)


def _g_np(z, a):
    return np.broadcast_to((z[:, 0] + 0.5 * a[:, 0])[:, None, None, None], (len(z), 4, 4, 3))


def _e_np(images):
    m = images.astype(np.float64).mean(axis=(1, 2, 3))
    return m[:, None] * np.arange(1, 9)[None, :], np.stack([3.0 * m, -m], axis=1)


def _inputs():
    rng = np.random.RandomState(3)
    real = rng.uniform(-1, 1, (3, 4, 4, 3)).astype(np.float32)
    attrs = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    z = rng.standard_normal((3, 8)).astype(np.float32)
    return real, attrs, z, _g_np(z, attrs).astype(np.float32)


def _by_hand(real, attrs, z, fake, weights):
    code, logits = _e_np(real)
    reconstruction = float(np.mean(np.abs(_g_np(code, attrs) - real)))
    attributes = _bce(logits, attrs)
    cycle = float(np.mean((_e_np(fake)[0] - z) ** 2))
    w_rec, w_attr, w_cycle = weights
    return {"e_reconstruction": reconstruction, "e_attributes": attributes, "e_cycle": cycle,
            "e_loss": w_rec * reconstruction + w_attr * attributes + w_cycle * cycle}


@pytest.mark.parametrize("weights", [(0.5, 2.0, 3.0), (0.0, 2.0, 3.0), (0.5, 0.0, 3.0), (0.5, 2.0, 0.0)])
def test_encoder_objective_is_the_weighted_sum_of_its_terms(weights):
    config = config_of(encoder=True, reconstruction_weight=weights[0], encoder_attribute_weight=weights[1],
                       cycle_weight=weights[2])
    real, attrs, z, fake = _inputs()
    value, metrics = loss.encoder_objective(_g, _e, *(ops.convert_to_tensor(x) for x in (real, attrs, z, fake)),
                                            config)
    expected = _by_hand(real, attrs, z, fake, weights)
    assert min(expected[k] for k in ("e_reconstruction", "e_attributes", "e_cycle")) > 0.05  # each term counts
    assert float(value) == pytest.approx(expected["e_loss"], rel=1e-5)
    for key in ("e_reconstruction", "e_attributes", "e_cycle", "e_loss"):
        assert float(metrics[key]) == pytest.approx(expected[key], rel=1e-5), key
    # E's attribute accuracy: logits (3m, -m) called "on" where positive.
    logits = _e_np(real)[1]
    assert float(metrics["e_attribute_accuracy"]) == pytest.approx(np.mean((logits > 0) == (attrs > 0.5)))


def test_feature_loss_compares_d_features_of_rebuild_and_photo_only_when_weighted():
    real, attrs, z, fake = _inputs()
    tensors = [ops.convert_to_tensor(x) for x in (real, attrs, z, fake)]

    def features(images, a):  # a stand-in for D's features: each image's per-channel mean
        return ops.mean(ops.cast(images, "float32"), axis=(1, 2))

    off, off_metrics = loss.encoder_objective(_g, _e, *tensors, config_of(**ENCODER), features)
    on, on_metrics = loss.encoder_objective(_g, _e, *tensors, config_of(**ENCODER, feature_weight=4.0), features)
    rebuilt = _g_np(_e_np(real)[0], attrs)
    expected = float(np.mean((rebuilt.mean(axis=(1, 2)) - real.mean(axis=(1, 2))) ** 2))
    assert expected > 0.01 and "e_features" not in off_metrics
    assert float(on_metrics["e_features"]) == pytest.approx(expected, rel=1e-5)
    assert float(on) == pytest.approx(float(off) + 4.0 * expected, rel=1e-5)


class _FixedD:
    def __call__(self, images, attrs):
        n = int(ops.shape(images)[0])
        return ops.mean(ops.cast(images, "float32"), axis=(1, 2, 3)), ops.zeros((n, int(ops.shape(attrs)[1])))


def test_generator_encoder_objective_adds_the_encoder_terms_on_gs_own_draws():
    """G's objective unchanged, plus E's terms whose latent cycle runs on the z G drew and its clean fakes."""
    config = config_of(**ENCODER, conditioning="projection", instance_noise=0.3)
    real, attrs, _, _ = _inputs()
    g_value, _ = loss.generator_objective(_g, _FixedD(), ops.convert_to_tensor(attrs), 0, config, ReplayRng(0, 0))
    drawn = []

    def real_batch(rng):  # after G's draws: its z is the plain objective's
        drawn.append(float(rng.uniform((1,))[0]))
        return ops.convert_to_tensor(real), ops.convert_to_tensor(attrs)

    value, metrics = loss.generator_encoder_objective(_g, _FixedD(), _e, real_batch, ops.convert_to_tensor(attrs), 0,
                                                      config, ReplayRng(0, 0))
    stream = np.random.RandomState(0)
    stream.standard_normal((3, config.latent_size)), stream.standard_normal((3, 4, 4, 3))  # z, instance noise
    assert drawn == [pytest.approx(stream.random_sample(1)[0])]
    z = np.random.RandomState(0).standard_normal((3, config.latent_size)).astype(np.float32)  # G's first draw
    expected = _by_hand(real, attrs, z, _g_np(z, attrs).astype(np.float32), (0.5, 2.0, 3.0))
    assert float(metrics["e_cycle"]) == pytest.approx(expected["e_cycle"], rel=1e-5)  # no instance noise on it
    assert float(value) == pytest.approx(float(g_value) + expected["e_loss"], rel=1e-5)
    assert float(metrics["g_loss"]) == pytest.approx(float(g_value), rel=1e-6)


# -- which networks each term reaches ---------------------------------------------------------------------------
def _term_gradients(**weights):
    """(max |grad| over E's weights, over G's weights) of encoder_objective with real networks (TensorFlow)."""
    import tensorflow as tf

    from training.networks import build_encoder, build_generator

    config = config_of(encoder=True, **weights)
    G, E = build_generator(config), build_encoder(config)
    images, attributes = gan_harness.tiny_data(config, count=4)
    real = tf.constant(images.astype(np.float32) / 127.5 - 1.0)
    attrs = tf.constant(attributes)
    z = tf.constant(np.random.RandomState(1).standard_normal((4, config.latent_size)).astype(np.float32))
    with tf.GradientTape() as tape:
        fake = G([z, attrs], training=True)
        value, _ = loss.encoder_objective(lambda z_, a: G([z_, a], training=True), lambda x: E(x, training=True),
                                          real, attrs, z, fake, config)
    grads = tape.gradient(value, E.trainable_variables + G.trainable_variables)
    size = lambda gs: max((float(tf.reduce_max(tf.abs(g))) for g in gs if g is not None), default=0.0)  # noqa: E731
    n_e = len(E.trainable_variables)
    return size(grads[:n_e]), size(grads[n_e:])


def test_cycle_term_reaches_e_and_not_g():
    e, g = _term_gradients(reconstruction_weight=0.0, encoder_attribute_weight=0.0, cycle_weight=1.0)
    assert e > 1e-6 and g == 0.0


def test_reconstruction_term_reaches_e_and_g():
    e, g = _term_gradients(reconstruction_weight=1.0, encoder_attribute_weight=0.0, cycle_weight=0.0)
    assert e > 1e-6 and g > 1e-6


def test_attribute_term_reaches_e_only():
    e, g = _term_gradients(reconstruction_weight=0.0, encoder_attribute_weight=1.0, cycle_weight=0.0)
    assert e > 1e-6 and g == 0.0


# -- the real step -------------------------------------------------------------------------------------------------
def _one_step(config, groups=None):
    """(groups before, groups after, metrics) of one replayed TensorFlow step."""
    images, attributes = gan_harness.tiny_data(config)
    trainer, models = gan_harness.trainer_for(config, images, attributes, groups, ReplayRng)
    before = models.checkpoint_groups()
    real, cond = gan_harness.indices(config, len(images))
    metrics = trainer.to_host(trainer.train_step(real, cond, 3))
    return before, models.checkpoint_groups(), metrics


def test_one_step_trains_e_at_its_learning_rate_ratio():
    config = config_of(**ENCODER, encoder_lr_ratio=0.25)
    before, after, metrics = _one_step(config)
    assert {"e_reconstruction", "e_attributes", "e_cycle", "e_loss", "e_attribute_accuracy"} <= set(metrics)
    # Adam's first step moves a weight by about its learning rate: g_lr * encoder_lr_ratio for E.
    moved = _changed(before, after, "e")
    assert 0.9 * 0.25 * config.g_lr < moved <= 1.01 * 0.25 * config.g_lr
    assert _changed(before, after, "e_opt") > 0


def test_encoder_terms_reach_g_through_reconstruction_only():
    """From the same weights: G's update with the encoder and reconstruction off is exactly the GAN's own; with
    reconstruction on it differs. E moves on the cycle term alone, and not at all with every term off."""
    start = gan_harness.config_of(**ENCODER)
    from training.models import build_models

    groups = build_models(start).checkpoint_groups()
    plain = {k: v for k, v in groups.items() if k not in ("e", "e_opt")}
    _, without, _ = _one_step(config_of(), plain)
    _, no_reconstruction, _ = _one_step(config_of(**{**ENCODER, "reconstruction_weight": 0.0}), groups)
    _, with_reconstruction, _ = _one_step(config_of(**ENCODER), groups)
    for a, b in zip(without["g"], no_reconstruction["g"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(without["g"], with_reconstruction["g"])) > 1e-6

    cycle_only = {**ENCODER, "reconstruction_weight": 0.0, "encoder_attribute_weight": 0.0, "cycle_weight": 1.0}
    before, after, _ = _one_step(config_of(**cycle_only), groups)
    assert _changed(before, after, "e") > 0.5 * config_of(**cycle_only).g_lr * 0.25
    nothing = {**cycle_only, "cycle_weight": 0.0}
    before, after, _ = _one_step(config_of(**nothing), groups)
    assert _changed(before, after, "e") == 0.0


def test_checkpoint_round_trip_restores_the_encoder(tmp_path):
    from training import checkpoint
    from training.errors import UsageError
    from training.models import build_models

    config = config_of(**ENCODER)
    _, trained, _ = _one_step(config)
    checkpoint.save_state(tmp_path, trained, {"step": 1})
    groups, _ = checkpoint.load_state(tmp_path)
    fresh = build_models(config_of(**ENCODER, seed=99))
    assert not np.array_equal(fresh.checkpoint_groups()["e"][0], trained["e"][0])
    fresh.load_groups(groups)
    restored = fresh.checkpoint_groups()
    assert {"e", "e_opt"} <= set(restored) and set(restored) == set(trained)
    for name in ("e", "e_opt", "g", "d"):
        assert len(restored[name]) == len(trained[name]) > 0
        for a, b in zip(restored[name], trained[name]):
            np.testing.assert_array_equal(a, b)
    # A checkpoint from before the encoder loads into a config without one; a config with one says what is missing.
    old = {k: v for k, v in trained.items() if k not in ("e", "e_opt")}
    build_models(config_of()).load_groups(old)
    with pytest.raises(UsageError, match="no encoder"):
        build_models(config).load_groups(old)


# -- the two backends ----------------------------------------------------------------------------------------------
BACKEND_ENCODER = {"d_steps": 2, "label_flip": 0.2, "instance_noise": 0.1, "spectral_norm": True,
                   "conditioning": "both", "ema_start": 0, "ema_decay": 0.5, **ENCODER, "feature_weight": 0.5,
                   "flip_images": True}


def test_tensorflow_and_jax_steps_agree_with_the_encoder(tmp_path):
    """One step from the same weights and draws on both backends, every encoder term on (the feature loss too)."""
    from training.models import build_models

    config = config_of(**BACKEND_ENCODER)
    start = build_models(config).checkpoint_groups()
    gan_harness.save_groups(tmp_path / "start.npz", start)
    tf_metrics, tf_after = gan_harness.one_step(config, start)
    _jax("one-step", json.dumps(BACKEND_ENCODER), str(tmp_path / "start.npz"), str(tmp_path / "jax.npz"))
    jax_after = gan_harness.load_groups(tmp_path / "jax.npz")
    jax_metrics = json.loads((tmp_path / "jax.npz.json").read_text())
    for key in ("g_loss", "e_reconstruction", "e_features", "e_attributes", "e_cycle", "e_loss",
                "e_attribute_accuracy"):
        assert jax_metrics[key] == pytest.approx(tf_metrics[key], rel=1e-4, abs=1e-5), key
    # As in test_gan_maths: within 1e-5 + 1% of an Adam step, E's step being a quarter of G's.
    for name, lr in (("g", config.g_lr), ("e", config.g_lr * config.encoder_lr_ratio)):
        tolerance = 1e-5 + 0.01 * lr
        for i, (a, b) in enumerate(zip(tf_after[name], jax_after[name])):
            assert np.max(np.abs(a - b), initial=0.0) <= tolerance + 1e-5 * np.max(np.abs(a), initial=0.0), (name, i)
        assert _changed({name: start[name]}, {name: jax_after[name]}, name) > 0.5 * lr, f"JAX did not update {name}"


# -- learning ------------------------------------------------------------------------------------------------------
LEARN_ENCODER = {"attributes": ["Male"], "batch_size": 16, "latent_size": 8, "g_width": 8, "g_max_width": 32,
                 "d_width": 8, "d_max_width": 32, "ema_start": 0, "ema_decay": 0.5, "g_lr": 1e-3, "d_lr": 1e-3,
                 "flip_images": False, "encoder": True}
LEARN_STEPS = 200


def test_encoder_learns_the_attribute_and_reconstructions_get_closer():
    """Colour data (the colour set by the attribute, a brightness of each image's own): after a short training E
    reads the colour attribute off unseen images, and G(E_z(x), the attributes E found) rebuilds them far closer
    than before. A frozen or unweighted attribute head rebuilds half of them in the wrong colour. (TensorFlow only:
    the JAX step is held to the TensorFlow one number for number above; `gan_harness.py encoder-learning` runs
    this on JAX.)"""
    result = gan_harness.encoder_learning(config_of(**LEARN_ENCODER), LEARN_STEPS)
    assert result["attribute_confidence"] > 0.9, result
    assert result["reconstruction_after"] < 0.45 * result["reconstruction_before"], result
