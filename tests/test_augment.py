"""DiffAugment (training/stabilisers.augment): each augmentation does what it says to the pixels, per image, is
differentiable, reaches everything D judges, and a resumed run may switch it on (recorded in run.json)."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tests.gan_harness import ReplayRng, config_of
from training import loss, stabilisers


def _dot_images(batch=6, size=32):
    """One bright pixel per image in the middle of a -1 background shifted to 0: easy to follow."""
    images = np.zeros((batch, size, size, 3), np.float32)
    images[:, size // 2, size // 2, :] = 1.0
    return images


def _shifts(seed, batch, size, ratio):
    """The (dy, dx) translation would draw with ReplayRng(seed): rows first, then columns."""
    most = int(size * ratio)
    stream = np.random.RandomState(seed)
    dy = np.minimum(np.floor(stream.random_sample(batch).astype(np.float32) * (2 * most + 1)), 2 * most) - most
    dx = np.minimum(np.floor(stream.random_sample(batch).astype(np.float32) * (2 * most + 1)), 2 * most) - most
    return dy.astype(int), dx.astype(int)


def test_translation_moves_each_image_by_its_own_drawn_shift_and_fills_with_zeros():
    images = _dot_images()
    out = np.asarray(stabilisers.augment(ops.convert_to_tensor(images), config_of(augment=["translation"]),
                                         ReplayRng(3, 0)))
    dy, dx = _shifts(3, 6, 32, stabilisers.TRANSLATION_RATIO)
    assert len(set(zip(dy, dx))) > 1  # the draws differ per image: a test that could tell one shift for all
    for i in range(6):
        expected = np.zeros_like(images[i])
        expected[16 + dy[i], 16 + dx[i], :] = 1.0
        np.testing.assert_array_equal(out[i], expected)
    # a full image shifted: the rows and columns it leaves are zero, the rest is the image moved
    full = np.random.RandomState(0).uniform(0.1, 1, (6, 32, 32, 3)).astype(np.float32)
    moved = np.asarray(stabilisers.augment(ops.convert_to_tensor(full), config_of(augment=["translation"]),
                                           ReplayRng(3, 0)))
    for i in range(6):
        rolled = np.roll(full[i], (dy[i], dx[i]), axis=(0, 1))
        valid = np.zeros((32, 32), bool)
        valid[max(dy[i], 0):32 + min(dy[i], 0), max(dx[i], 0):32 + min(dx[i], 0)] = True
        np.testing.assert_array_equal(moved[i][valid], rolled[valid])
        assert (moved[i][~valid] == 0).all()


def test_cutout_zeroes_one_square_of_half_the_side_per_image():
    images = np.ones((8, 32, 32, 3), np.float32)
    out = np.asarray(stabilisers.augment(ops.convert_to_tensor(images), config_of(augment=["cutout"]),
                                         ReplayRng(1, 0)))
    holes = []
    for i in range(8):
        zero = (out[i] == 0).all(axis=2)
        rows, cols = np.where(zero.any(axis=1))[0], np.where(zero.any(axis=0))[0]
        # one axis-aligned rectangle, 16 px on a side unless clipped at an edge
        assert zero.sum() == len(rows) * len(cols) and zero[np.ix_(rows, cols)].all()
        assert len(rows) <= 16 and len(cols) <= 16 and (len(rows) == 16 or rows[0] == 0 or rows[-1] == 31)
        holes.append((rows[0], cols[0]))
        assert (out[i][~zero] == 1).all()
    assert len(set(holes)) > 1


def test_color_changes_brightness_saturation_and_contrast_per_image():
    images = np.random.RandomState(0).uniform(-0.5, 0.5, (4, 16, 16, 3)).astype(np.float32)
    out = np.asarray(stabilisers.augment(ops.convert_to_tensor(images), config_of(augment=["color"]),
                                         ReplayRng(2, 0)))
    stream = np.random.RandomState(2)
    brightness, saturation, contrast = (stream.random_sample(4).astype(np.float32) for _ in range(3))
    x = images + (brightness - 0.5)[:, None, None, None]
    mean = x.mean(axis=3, keepdims=True)
    x = (x - mean) * (saturation * 2)[:, None, None, None] + mean
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * (contrast + 0.5)[:, None, None, None] + mean
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_augmentation_is_differentiable_and_off_by_default():
    images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32))
    assert stabilisers.augment(images, config_of(), ReplayRng(0, 0)) is images
    with tf.GradientTape() as tape:
        tape.watch(images)
        out = stabilisers.augment(images, config_of(augment=["translation", "cutout"]), ReplayRng(0, 0))
        total = tf.reduce_sum(out * out)
    grad = tape.gradient(total, images).numpy()
    assert np.abs(grad).sum() > 0 and (grad == 0).any()  # flows where pixels survive, not where they were cut


@pytest.mark.parametrize("objective", ["discriminator", "generator"])
def test_everything_d_judges_is_augmented(objective):
    """Real images and fakes in D's step and fakes in G's step: skipping any one of them fails here."""
    config = config_of(augment=["cutout"], conditioning="projection", instance_noise=0.0)
    seen = []

    def d_forward(images, attrs):
        seen.append(np.asarray(images))
        n = int(ops.shape(images)[0])
        return ops.zeros((n, 1)), ops.zeros((n, int(ops.shape(attrs)[1])))

    def g_forward(z, attrs):
        return ops.ones((ops.shape(z)[0], 32, 32, 3))

    real, attrs = ops.ones((3, 32, 32, 3)), ops.zeros((3, config.num_attributes))
    if objective == "discriminator":
        loss.discriminator_objective(g_forward, d_forward, real, attrs, attrs, 0, config, ReplayRng(0, 0))
        assert len(seen) == 2
    else:
        loss.generator_objective(g_forward, d_forward, attrs, 0, config, ReplayRng(0, 0))
        assert len(seen) == 1
    for images in seen:  # every image D judged has a cut-out hole
        assert all((image == 0).all(axis=2).sum() > 0 for image in images)


def test_config_rejects_unknown_augmentations():
    from training.config import AUGMENTATIONS
    from training.usage_error import UsageError

    assert set(AUGMENTATIONS) == set(stabilisers.AUGMENTATIONS)  # every name the config accepts is implemented

    with pytest.raises(UsageError, match="augment: unknown"):
        config_of(augment=["rotation"])
