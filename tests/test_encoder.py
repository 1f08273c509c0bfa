"""The encoder E (config.encoder): each loss term against a hand-computed value, which networks each term reaches,
one real step updating E (and G through reconstruction only), E's checkpoint round trip by weights, the TensorFlow
and JAX steps agreeing with E on, a short learning test, the export's encode function and manifest object, and
the model card's encoder section and edits.png (each tile checked against the SavedModel's encode and generate).

Every test here fails when the AE path is broken: a term dropped or unweighted, E not updated, the cycle's gradient
cut off from E or leaking into G, E missing from checkpoints, the pixel rule wrong in the exported graph.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from keras import ops

from tests import gan_harness
from tests.gan_harness import ReplayRng, bce, config_of, largest_change, run_jax, sigmoid
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
    attributes = bce(logits, attrs)
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


@pytest.mark.slow
def test_one_step_trains_e_at_its_learning_rate_ratio():
    config = config_of(**ENCODER, encoder_lr_ratio=0.25)
    before, after, metrics = _one_step(config)
    assert {"e_reconstruction", "e_attributes", "e_cycle", "e_loss", "e_attribute_accuracy"} <= set(metrics)
    # Adam's first step moves a weight by about its learning rate: g_lr * encoder_lr_ratio for E.
    moved = largest_change(before, after, "e")
    assert 0.9 * 0.25 * config.g_lr < moved <= 1.01 * 0.25 * config.g_lr
    assert largest_change(before, after, "e_opt") > 0


@pytest.mark.slow
def test_encoder_terms_reach_g_through_reconstruction_only():
    """From the same weights: G's update with the encoder and reconstruction off is exactly the GAN's own; with
    reconstruction on it differs. E moves on the cycle term alone, and not at all with every term off."""
    start = gan_harness.config_of(**ENCODER)
    from training.gan_state import build_models

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
    assert largest_change(before, after, "e") > 0.5 * config_of(**cycle_only).g_lr * 0.25
    nothing = {**cycle_only, "cycle_weight": 0.0}
    before, after, _ = _one_step(config_of(**nothing), groups)
    assert largest_change(before, after, "e") == 0.0


@pytest.mark.slow
def test_checkpoint_round_trip_restores_the_encoder(tmp_path):
    from training import checkpoint
    from training.usage_error import UsageError
    from training.gan_state import build_models

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


@pytest.mark.slow
def test_tensorflow_and_jax_steps_agree_with_the_encoder(tmp_path):
    """One step from the same weights and draws on both backends, every encoder term on (the feature loss too)."""
    from training.gan_state import build_models

    config = config_of(**BACKEND_ENCODER)
    start = build_models(config).checkpoint_groups()
    gan_harness.save_groups(tmp_path / "start.npz", start)
    tf_metrics, tf_after = gan_harness.one_step(config, start)
    run_jax("one-step", json.dumps(BACKEND_ENCODER), str(tmp_path / "start.npz"), str(tmp_path / "jax.npz"))
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
        assert largest_change({name: start[name]}, {name: jax_after[name]}, name) > 0.5 * lr, (
            f"JAX did not update {name}")


# -- learning ------------------------------------------------------------------------------------------------------
LEARN_ENCODER = {"attributes": ["Male"], "batch_size": 16, "latent_size": 8, "g_width": 8, "g_max_width": 32,
                 "d_width": 8, "d_max_width": 32, "ema_start": 0, "ema_decay": 0.5, "g_lr": 1e-3, "d_lr": 1e-3,
                 "flip_images": False, "encoder": True}
LEARN_STEPS = 200


@pytest.mark.slow
def test_encoder_learns_the_attribute_and_reconstructions_get_closer():
    """Colour data (the colour set by the attribute, a brightness of each image's own): after a short training E
    reads the colour attribute off unseen images, and G(E_z(x), the attributes E found) rebuilds them far closer
    than before. A frozen or unweighted attribute head rebuilds half of them in the wrong colour. (TensorFlow only:
    the JAX step is held to the TensorFlow one number for number above; `gan_harness.py encoder-learning` runs
    this on JAX.)"""
    result = gan_harness.encoder_learning(config_of(**LEARN_ENCODER), LEARN_STEPS)
    assert result["attribute_confidence"] > 0.9, result
    assert result["reconstruction_after"] < 0.45 * result["reconstruction_before"], result


# -- export --------------------------------------------------------------------------------------------------------
CELEBA_HQ = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-hq-128" / "CelebA-HQ-img"
TINY = {"resolution": 32, "latent_size": 8, "attributes": ["Male", "Smiling", "Eyeglasses"], "g_width": 8,
        "g_max_width": 16, "d_width": 8, "d_max_width": 16, "encoder": True}


def _random_weights(model, seed):
    rng = np.random.RandomState(seed)
    for variable in model.weights:
        variable.assign((0.1 * rng.standard_normal(tuple(variable.shape))).astype(variable.dtype))


@pytest.mark.slow
def test_exported_encode_is_the_encoder_behind_the_inverse_pixel_rule(tmp_path):
    import tensorflow as tf

    from facegen import model_folder
    from training.config import TrainConfig
    from training.export import UNTRAINED_FRAMING, write_saved_model
    from training.networks import build_encoder, build_generator

    config = TrainConfig(**TINY).validate()
    generator, encoder = build_generator(config), build_encoder(config)
    _random_weights(encoder, 1)  # biases too, so every part of the graph shows
    framing = {"landmarks": UNTRAINED_FRAMING, "detector": "mtcnn 1.0.0", "source": "test"}
    out = write_saved_model(generator, config, tmp_path / "m", {"name": "m"}, encoder, framing)
    images = np.random.RandomState(2).randint(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    images[0] = 0
    images[1] = 255
    z, logits = encoder(images.astype(np.float32) / 127.5 - 1.0)  # the pixel rule, written out: 0 -> -1, 255 -> 1
    loaded = tf.saved_model.load(str(out))
    for result in (loaded.encode(images), loaded.signatures["encode"](images=tf.constant(images))):
        assert set(result) == {"noise", "attrs"}
        assert result["noise"].dtype == result["attrs"].dtype == tf.float32
        np.testing.assert_allclose(result["noise"].numpy(), np.asarray(z), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result["attrs"].numpy(), sigmoid(logits), rtol=1e-5, atol=1e-6)
    noise, probabilities = model_folder.load_encode(out)(images)
    np.testing.assert_allclose(noise, np.asarray(z), rtol=1e-5, atol=1e-6)
    assert probabilities.shape == (5, 3) and np.all((probabilities > 0) & (probabilities < 1))

    manifest = model_folder.read_manifest(out)
    assert manifest["encoder"] == {
        "signature": "encode", "input": [None, 32, 32, 3], "dtype": "uint8",
        "output": {"noise": [None, 8], "attrs": [None, 3]}, "attrs": "probabilities",
        "framing": {"landmarks": UNTRAINED_FRAMING, "names": ["left_eye", "right_eye", "nose", "mouth_left",
                                                              "mouth_right"],
                    "size": 32, "detector": "mtcnn 1.0.0", "source": "test"}}


@pytest.mark.slow
def test_random_models_encode_only_when_asked_and_keep_their_generator(tmp_path):
    import tensorflow as tf

    from facegen import model_folder
    from training.export import UNTRAINED_FRAMING, export_random_model

    plain = export_random_model(tmp_path / "plain", seed=4)
    with_encoder = export_random_model(tmp_path / "enc", seed=4, encoder=True)
    assert model_folder.read_manifest(plain)["encoder"] is None
    loaded_plain = tf.saved_model.load(str(plain))
    assert not hasattr(loaded_plain, "encode") and "encode" not in loaded_plain.signatures
    manifest = model_folder.read_manifest(with_encoder)
    assert manifest["encoder"]["framing"]["landmarks"] == UNTRAINED_FRAMING
    assert manifest["encoder"]["framing"]["detector"].startswith("mtcnn ")
    # The encoder's weights are drawn after the generator's: the same seed gives the same generator either way.
    noise = np.random.RandomState(0).standard_normal((2, 16)).astype(np.float32)
    attrs = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    generate_plain, _ = model_folder.load_generate(plain)
    generate_enc, loaded = model_folder.load_generate(with_encoder)
    np.testing.assert_array_equal(generate_plain(noise, attrs), generate_enc(noise, attrs))
    photos = generate_enc(noise, attrs)
    out = loaded.encode(photos)
    assert out["noise"].shape == (2, 16) and out["attrs"].shape == (2, 3)
    # Both through the contract's call (model_folder.CALL_ROWS rows per call: a raw call of 2 rows may differ in the
    # last float bits).
    again = model_folder.load_encode(export_random_model(tmp_path / "again", seed=4, encoder=True))(photos)
    np.testing.assert_array_equal(again[0], model_folder.load_encode(with_encoder, loaded)(photos)[0])


@pytest.mark.parametrize("change, problem", [
    (lambda e: e.update(signature="serving_default"), "signature"),
    (lambda e: e.update(input=[None, 64, 64, 3]), "input"),
    (lambda e: e["output"].update(attrs=[None, 2]), "output"),
    (lambda e: e["framing"].update(landmarks=[[0.3, 0.4]] * 4), "landmarks"),
    (lambda e: e["framing"].update(landmarks=[[1.5, 0.4]] * 5), "landmarks"),
    (lambda e: e["framing"].update(names=["a", "b", "c", "d", "e"]), "names"),
    (lambda e: e["framing"].update(size=64), "size"),
    (lambda e: e["framing"].pop("detector"), "detector"),
])
def test_manifest_encoder_object_is_validated(change, problem):
    from facegen import model_folder
    from training.export import UNTRAINED_FRAMING

    encoder = model_folder.encoder_field(32, 8, 3, {"landmarks": UNTRAINED_FRAMING, "detector": "mtcnn 1.0.0"})
    manifest = model_folder.build_manifest(name="m", resolution=32, latent_size=8, attributes=["A", "B", "C"],
                                           architecture="facegen", parameters=1, created="x", encoder=encoder)
    assert model_folder.validate_manifest(json.loads(json.dumps(manifest)), "ok")["encoder"] == encoder
    change(manifest["encoder"])
    with pytest.raises(model_folder.ManifestError, match=f"encoder .*{problem}"):
        model_folder.validate_manifest(manifest, "m")
    with pytest.raises(model_folder.ManifestError, match="encoder must be an object"):
        model_folder.validate_manifest({**manifest, "encoder": [1]}, "m")


def _fake_run(run_dir, cache=None):
    """A run folder with an encoder (random weights in its checkpoint), recording ``cache`` as its data."""
    from training import checkpoint
    from training.config import TrainConfig
    from training.networks import build_encoder, build_generator

    config = TrainConfig(**TINY).validate()
    run_dir.mkdir()
    config.save(run_dir / "config.json")
    (run_dir / "run.json").write_text(json.dumps({"attribute_frequencies": [0.4, 0.5, 0.1],
                                                  "dataset": {"name": "t", "cache": str(cache) if cache else None}}))
    generator, encoder = build_generator(config), build_encoder(config)
    _random_weights(encoder, 3)
    weights = [np.asarray(v.numpy()) for v in generator.variables]
    checkpoint.save_state(run_dir, {"g": weights, "g_ema": weights,
                                    "e": [np.asarray(v.numpy()) for v in encoder.variables]}, {"step": 5})
    return encoder


@pytest.mark.slow
def test_export_of_a_run_with_an_encoder_copies_or_demands_its_framing(tmp_path, capsys):
    import tensorflow as tf

    from facegen import model_folder
    from training.__main__ import main
    from training.export import export_random_model

    encoder = _fake_run(tmp_path / "run", cache=tmp_path / "gone.npz")
    out = tmp_path / "model"
    # The recorded cache is gone and nothing else is given: a clear error naming both ways out.
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "gone.npz is not available" in err and "--data" in err and "--framing-from" in err
    assert not out.exists()

    source = export_random_model(tmp_path / "source", name="source", encoder=True,
                                 framing=[[0.35, 0.45], [0.65, 0.45], [0.5, 0.6], [0.4, 0.75], [0.6, 0.75]])
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(out), "--framing-from", str(source)]) == 0
    framing = model_folder.read_manifest(out)["encoder"]["framing"]
    assert framing["landmarks"] == [[0.35, 0.45], [0.65, 0.45], [0.5, 0.6], [0.4, 0.75], [0.6, 0.75]]
    assert "copied from the model source" in framing["source"]
    images = np.random.RandomState(6).randint(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    z, _ = encoder(images.astype(np.float32) / 127.5 - 1.0)  # the run's trained encoder is the one exported
    loaded = tf.saved_model.load(str(out))  # kept: its functions need the object alive
    np.testing.assert_allclose(loaded.encode(images)["noise"].numpy(), np.asarray(z), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_train_then_export_measures_the_framing_on_the_runs_training_photos(tmp_path, capsys):
    """Real CelebA-HQ portraits (read at test time from the shared folder, never copied into the repo), shrunk to
    32 px into a cache; `train` with the encoder for two steps records the cache, and `export` finds the photos'
    landmarks there (enlarged for the detector) and writes their mean as the template."""
    if not CELEBA_HQ.is_dir():
        pytest.skip(f"CelebA-HQ photos not found at {CELEBA_HQ}")
    from PIL import Image

    from facegen import model_folder
    from training.__main__ import main
    from training.data import save_cache
    from training.export import UNTRAINED_FRAMING

    photos = []
    for number in range(8):
        with Image.open(CELEBA_HQ / f"{number}.jpg") as image:
            photos.append(np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS)))
    partition = np.array([0, 0, 0, 0, 0, 0, 2, 2], np.uint8)
    cache = save_cache(tmp_path / "faces-32.npz", np.stack(photos), np.eye(8, 3, dtype=np.uint8),
                       ["Male", "Smiling", "Eyeglasses"], partition, [f"{i}.jpg" for i in range(8)],
                       {"source": "test", "size": 32, "count": 8})
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "batch_size": 4, "log_every": 1}))
    run = tmp_path / "run"
    assert main(["train", "--data", str(cache), "--out", str(run), "--config", str(tmp_path / "config.json"),
                 "--steps", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "e_reconstruction" in printed and "e_cycle" in printed
    with open(run / "log.csv", newline="") as handle:  # the encoder's losses are logged, not only printed
        rows = list(csv.DictReader(handle))
    assert rows and all(float(row[key]) >= 0 for row in rows
                        for key in ("e_reconstruction", "e_cycle", "e_attribute_accuracy"))
    assert json.loads((run / "run.json").read_text())["dataset"]["cache"] == str(cache.resolve())
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "model"), "--framing-images", "5"]) == 0
    framing = model_folder.read_manifest(tmp_path / "model")["encoder"]["framing"]
    assert framing["images"] + framing["skipped"] == 5 and framing["images"] >= 4
    assert framing["detector"].startswith("mtcnn ") and "faces-32.npz" in framing["source"]
    # Five CelebA-HQ faces land close to the template of 500 (the eyes within 3% of the side).
    np.testing.assert_allclose(framing["landmarks"], UNTRAINED_FRAMING, atol=0.05)
    np.testing.assert_allclose(np.asarray(framing["landmarks"])[:2], np.asarray(UNTRAINED_FRAMING)[:2], atol=0.03)


# -- the model card's encoder section and edits.png -------------------------------------------------------------
ENCODER_METRICS = {
    "encoder_attributes": {"mean_balanced": 0.8125, "photos": 40, "per_attribute": {
        "Male": {"balanced": 0.9375, "accuracy": 0.95, "positives": 17, "ceiling": 0.97},
        "Smiling": {"balanced": 0.6875, "accuracy": 0.7, "positives": 20, "ceiling": 0.91}}},
    "encoder_reconstruction": {"psnr": 18.345, "psnr_true_attributes": 18.1, "psnr_random_code": 11.25,
                               "feature_distance": 3.5, "different_photos_feature_distance": 7.0,
                               "feature_ratio": 0.5, "photos": 40},
    "encoder_edit": {"changed": 0.775, "kept": 0.9, "success": 0.6125, "photos": 40,
                     "identity": {"edit_rebuild": 0.83, "edit_photo": 0.41, "rebuild_photo": 0.44,
                                  "different_photos": -0.02},
                     "per_attribute": {"Male": {"changed": 0.8, "to_on": 0.7, "to_off": 0.9, "kept": 0.95,
                                                "success": 0.65, "identity_edit_rebuild": 0.8}}},
    "samples": {"encoded": 40, "encoded_from": "test partition"},
}


def _encoder_manifest(metrics, encoder=True):
    from facegen import model_folder
    from training.export import UNTRAINED_FRAMING

    field = model_folder.encoder_field(32, 8, 2, {"landmarks": UNTRAINED_FRAMING, "detector": "mtcnn 1.0.0"})
    return model_folder.build_manifest(name="enc", resolution=32, latent_size=8, attributes=["Male", "Smiling"],
                                       architecture="facegen", parameters=1, created="x", metrics=metrics,
                                       encoder=field if encoder else None)


def test_card_shows_the_encoders_figures_beside_the_baselines_or_says_not_evaluated():
    from training.card import render_card

    baseline = {"encoder_edit": {"success": 0.25, "identity": {"edit_photo": 0.125}},
                "encoder_attributes": {"per_attribute": {"Male": {"balanced": 0.5625}}}}
    card = render_card(_encoder_manifest(ENCODER_METRICS), ["samples.png"], baseline, "ArtiFace")
    assert "## Editing photos (the encoder)" in card and "Measured on 40 held-out photos (test partition)" in card
    assert "| attribute reading, balanced accuracy (mean) | 0.812 | n/a | How often" in card
    assert "| rebuild PSNR, dB (higher is closer) | 18.345 | n/a |" in card
    assert "| PSNR from random noise, same attributes | 11.250 | n/a |" in card
    assert "| rebuild feature distance / two different photos' | 0.500 | n/a |" in card
    assert "| edit success | 0.613 | 0.250 |" in card and "| identity: edit vs photo | 0.410 | 0.125 |" in card
    assert "| identity: two different photos | -0.020 | n/a |" in card
    assert "| Male | 0.938 | 0.970 | 0.800 | 0.700 | 0.900 | 0.950 | 0.650 | 0.562 | n/a |" in card
    assert "| Smiling | 0.688 | 0.910 | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in card
    assert "No edits.png: no held-out photos were given" in card

    # Part of the figures: the missing metric says so, row by row; none at all: the section says so once.
    partial = {k: v for k, v in ENCODER_METRICS.items() if k != "encoder_edit"}
    partial["encoder_attributes"] = {"skipped": "unconditional model: no attributes to read"}
    card = render_card(_encoder_manifest(partial), [])
    assert "| edit success | not evaluated |" in card and "| rebuild PSNR, dB (higher is closer) | 18.345 |" in card
    assert "| attribute reading, balanced accuracy (mean) | skipped |" in card
    assert "encoder_attributes was skipped: unconditional model: no attributes to read." in card
    card = render_card(_encoder_manifest({}), [])
    assert "Encoder figures: not evaluated." in card and "| edit success |" not in card
    assert "Editing photos" not in render_card(_encoder_manifest(ENCODER_METRICS, encoder=False), [])


def _edit_cache(path, size=48, synthetic=True):
    """Random 'photos' (48 px, so the card must resize them to the model's 32) in a cache: 4 test, 4 training.
    synthetic=False: the cache says they are photographs of real people (CelebA-like terms)."""
    from training.data import save_cache

    photos = np.random.RandomState(8).randint(0, 256, (8, size, size, 3)).astype(np.uint8)
    partition = np.array([0, 2, 0, 2, 2, 0, 0, 2], np.uint8)
    meta = {"source": "test", "size": size, "count": 8, "synthetic": synthetic}
    return save_cache(path, photos, np.zeros((8, 1), np.uint8), ["Male"], partition,
                      [f"{i}.jpg" for i in range(8)], meta), photos[partition == 2]


def _run_folder(path, cache):
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"dataset": {"name": "t", "cache": str(cache)}}))
    return path


def test_card_finds_held_out_photos_through_the_runs_cache_or_says_why_not(tmp_path):
    from training.card import held_out_photos

    cache, test_photos = _edit_cache(tmp_path / "faces.npz")
    photos, source = held_out_photos(None, _run_folder(tmp_path / "run", cache))
    np.testing.assert_array_equal(photos, test_photos)  # the test partition, never training photos
    assert source == "the first 4 photos of the test partition of `faces.npz`"
    assert held_out_photos(cache, None, count=2)[0].shape == (2, 48, 48, 3)
    assert held_out_photos(None, _run_folder(tmp_path / "gone", tmp_path / "gone.npz"))[1] == (
        "the run's data cache gone.npz is not here; give `card --data CACHE`")
    assert "no data cache was given" in held_out_photos(None, None)[1]


@pytest.mark.slow
def test_card_never_copies_real_peoples_photos_into_the_model_folder(tmp_path):
    """A cache of real photographs (CelebA's terms forbid copying them, and models/ is shipped): edits.png starts
    from the faces the service shows for seeds 0.., not from the photos, and the card says why."""
    from PIL import Image

    from facegen import attributes, model_folder
    from training import card
    from training.__main__ import main

    model = export_random_model_with_encoder(tmp_path / "m")
    cache, test_photos = _edit_cache(tmp_path / "real.npz", size=32, synthetic=False)
    assert card.held_out_photos(cache, None)[0] is None
    assert main(["card", "--model", str(model), "--data", str(cache)]) == 0
    text = (model / "MODEL_CARD.md").read_text()
    assert "![edits.png](edits.png)" in text and "photographs of real people whose terms forbid copying" in text
    sheet = np.asarray(Image.open(model / "edits.png").convert("RGB"))
    manifest = model_folder.read_manifest(model)
    generate, _loaded = model_folder.load_generate(model)
    table = attributes.AttributeTable.from_manifest(manifest.get("attribute_table"), manifest["attributes"])
    for row in range(card.EDIT_PHOTOS):
        x, y = card.edit_tile_origin(row, 0, 32)
        tile = sheet[y:y + 32, x:x + 32]
        # the face the service shows for ?seed=row, drawn by the service's own rule
        noise, vector, _ = attributes.seed_face(row, manifest["latent_size"], 1.0, manifest["attribute_frequencies"],
                                                table)
        np.testing.assert_array_equal(tile, generate(noise[None], vector[None])[0])
        assert not any(np.array_equal(tile, photo) for photo in test_photos)


def export_random_model_with_encoder(path):
    from training.export import export_random_model

    return export_random_model(path, name="m", resolution=32, latent_size=8, encoder=True, seed=3)


@pytest.mark.slow
def test_card_draws_edits_png_with_the_savedmodels_encode_and_generate(tmp_path):
    """edits.png: rows of held-out photos; columns photo, rebuild G(E_z(x), found), one flip per attribute. Each tile
    is compared with the SavedModel's own outputs, so a rebuild from random noise (or a wrong flip) fails here."""
    from PIL import Image

    from facegen import edit_methods, model_folder
    from training import card
    from training.__main__ import main
    from training.classifier import resize_images
    from training.export import export_random_model

    model = export_random_model(tmp_path / "m", name="m", resolution=32, latent_size=8, encoder=True, seed=3)
    cache, test_photos = _edit_cache(tmp_path / "faces.npz")
    run = _run_folder(tmp_path / "run", tmp_path / "gone.npz")  # the recorded cache is gone: no picture, said why
    assert main(["card", "--model", str(model), "--run", str(run)]) == 0
    assert not (model / "edits.png").exists()
    assert "No edits.png: the run's data cache gone.npz is not here" in (model / "MODEL_CARD.md").read_text()

    assert main(["card", "--model", str(model), "--run", str(run), "--data", str(cache)]) == 0  # --data wins
    text = (model / "MODEL_CARD.md").read_text()
    assert "![edits.png](edits.png)" in text and "Encoder figures: not evaluated." in text
    assert "test partition of `faces.npz`" in text
    edits = ["Male", "Smiling", "Eyeglasses"]  # export_random_model's attributes, in EDIT_PREFERENCE order
    assert card.edit_attributes(["Eyeglasses", "Smiling", "Male"]) == edits
    sheet = np.asarray(Image.open(model / "edits.png").convert("RGB"))
    assert (sheet.shape[1], sheet.shape[0]) == card.edit_sheet_size(4, 2 + len(edits), 32)

    def tile(row, column):
        x, y = card.edit_tile_origin(row, column, 32)
        return sheet[y:y + 32, x:x + 32]

    photos = resize_images(test_photos, 32)
    generate, loaded = model_folder.load_generate(model)
    noise, _, found = edit_methods.encoder_inputs(*model_folder.load_encode(model, loaded)(photos))  # as served
    rebuilt = generate(noise, found)
    attributes = model_folder.read_manifest(model)["attributes"]
    for column, name in enumerate(edits, start=2):
        flipped = found.copy()
        flipped[:, attributes.index(name)] = 1.0 - flipped[:, attributes.index(name)]
        edited = generate(noise, flipped)
        for row in range(4):
            np.testing.assert_array_equal(tile(row, column), edited[row])
    for row in range(4):
        np.testing.assert_array_equal(tile(row, 0), photos[row])
        np.testing.assert_array_equal(tile(row, 1), rebuilt[row])
    # The check above can tell: random noise with the same attributes draws other faces.
    random_noise = np.random.RandomState(0).standard_normal(noise.shape).astype(np.float32)
    assert not np.array_equal(generate(random_noise, found), rebuilt)
