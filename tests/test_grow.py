"""Growing a model to twice its resolution (training/grow.py): the warm start keeps the small model's faces, the
fade blends in the new top block on the step's schedule, and D's real images blur the same way."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

from tests.gan_harness import config_of, indices, tiny_data, trainer_for

ATTRS = ["Male", "Smiling"]
# A 32 px random model (export_random_model's widths: g_width 8, max 32) and the 64 px config that grows from it:
# half the width per resolution, and a floor of 8 so the new top block keeps the small to_rgb's width.
GROWN = dict(resolution=64, latent_size=8, attributes=ATTRS, g_width=4, g_max_width=32, g_min_width=8,
             d_width=4, d_max_width=32, d_min_width=8, batch_size=4, encoder=True, ema_start=0)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from training.export import export_random_model

    return export_random_model(tmp_path_factory.mktemp("small") / "small32", resolution=32, latent_size=8,
                               attributes=ATTRS, encoder=True, seed=3)


def grown_models(small_model, **overrides):
    from training.gan_state import build_models
    from training.grow import warm_start

    config = config_of(**{**GROWN, "grow_from": str(small_model), "fade_in_steps": 4, **overrides})
    models = build_models(config)
    return config, models, warm_start(models, config)


@pytest.mark.slow
def test_grown_generator_starts_as_the_small_model_upsampled(small_model):
    import tensorflow as tf
    from keras import layers

    config, models, copied = grown_models(small_model)
    assert {"base", "up8", "up16", "up32", "to_rgb", "to_rgb_prev"} <= set(copied["generator"])
    assert {"down8", "down4", "conv4", "features", "z", "attributes"} <= set(copied["encoder"])
    rng = np.random.RandomState(0)
    z = rng.standard_normal((5, 8)).astype(np.float32)
    a = (rng.random_sample((5, 2)) < 0.5).astype(np.float32)
    loaded = tf.saved_model.load(str(small_model))  # held: its functions need its variables alive
    small = loaded.generate(z, a).numpy().astype(np.float32) / 127.5 - 1.0
    expected = np.asarray(layers.UpSampling2D(2, interpolation="bilinear")(small))
    for generator in (models.generator, models.ema_generator):
        generator.fade.assign(0.0)
        grown = np.asarray(generator([z, a], training=False))
        assert grown.shape == (5, 64, 64, 3)
        # the small model's pixels were rounded to uint8: half a level of error, kept by bilinear upsampling
        np.testing.assert_allclose(grown, expected, atol=0.6 / 127.5 + 1e-5)
    # fade 1: the new (random) top block alone, which is not the small model's face
    models.generator.fade.assign(1.0)
    assert np.abs(np.asarray(models.generator([z, a], training=False)) - expected).mean() > 0.05


@pytest.mark.slow
def test_train_step_sets_the_fade_from_the_step(small_model):
    config, _, _ = grown_models(small_model)
    images, attributes = tiny_data(config)
    trainer, models = trainer_for(config, images, attributes)
    real, cond = indices(config, len(images))
    for step, alpha in ((0, 0.0), (2, 0.5), (9, 1.0)):
        trainer.train_step(real, cond, step)
        assert float(models.generator.fade.numpy()) == pytest.approx(alpha)
        assert float(models.ema_generator.fade.numpy()) == pytest.approx(alpha)


def test_real_images_fade_from_blurred_to_sharp():
    from keras import ops

    from training.grow import fade_real

    config = config_of(resolution=32, fade_in_steps=10)
    rng = np.random.RandomState(1)
    sharp = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    blurred = np.asarray(fade_real(sharp, 0, config))
    # 2x2 means, upsampled: the same overall colour, and most of the pixel noise averaged away
    np.testing.assert_allclose(blurred.mean(axis=(1, 2)), sharp.mean(axis=(1, 2)), atol=0.02)
    assert blurred.std() < 0.6 * sharp.std()
    np.testing.assert_allclose(np.asarray(fade_real(sharp, 10, config)), sharp, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fade_real(sharp, 5, config)), (sharp + blurred) / 2, atol=1e-5)
    assert np.asarray(fade_real(ops.convert_to_tensor(sharp), 0, config_of(resolution=32))).tolist() == sharp.tolist()


@pytest.mark.slow
def test_grow_from_refuses_a_model_of_the_wrong_size(small_model):
    from training.usage_error import UsageError

    with pytest.raises(UsageError, match="grow_from.*32 px"):
        grown_models(small_model, resolution=128, g_width=2, d_width=2)
    with pytest.raises(UsageError, match="grow_from.*not a model folder"):
        grown_models(small_model.parent / "missing")


@pytest.mark.slow
def test_d_warmup_holds_g_while_d_and_the_encoder_learn(small_model):
    config, _, _ = grown_models(small_model, d_warmup_steps=2)
    images, attributes = tiny_data(config)
    trainer, models = trainer_for(config, images, attributes)
    real, cond = indices(config, len(images))

    def weights(model):
        return [np.array(v.numpy()) for v in model.trainable_variables]

    g0, d0, e0 = weights(models.generator), weights(models.discriminator), weights(models.encoder)
    trainer.train_step(real, cond, 1)  # inside the warm-up: D and E move, G does not, the fade has not begun
    assert all(np.array_equal(a, b) for a, b in zip(g0, weights(models.generator)))
    assert not all(np.array_equal(a, b) for a, b in zip(d0, weights(models.discriminator)))
    assert not all(np.array_equal(a, b) for a, b in zip(e0, weights(models.encoder)))
    assert float(models.generator.fade.numpy()) == 0.0
    trainer.train_step(real, cond, 4)  # after it: G moves, and the fade is (4 - 2) / 4 of the way
    assert not all(np.array_equal(a, b) for a, b in zip(g0, weights(models.generator)))
    assert float(models.generator.fade.numpy()) == pytest.approx(0.5)
