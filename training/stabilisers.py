"""GAN stabilisers as small backend-neutral formulas (keras.ops), each driven by one config switch.

Both train steps (step_tensorflow.py, step_jax.py) call these, so the two backends cannot drift apart.
"""

from keras import ops


# -- instance noise ------------------------------------------------------------------------------------------
def instance_noise_std(config, step):
    """Instance noise on D's inputs, annealed linearly from config.instance_noise to zero at instance_noise_steps.

    Noise widens both distributions so early D cannot separate them perfectly and starve G of gradients.
    """
    if config.instance_noise <= 0:
        return 0.0
    progress = ops.minimum(ops.cast(step, "float32") / float(config.instance_noise_steps), 1.0)
    return config.instance_noise * (1.0 - progress)


def add_instance_noise(images, config, step, rng):
    """images + N(0, std^2) where instance noise is on. Applied to everything D judges, in D's step and in G's:
    G is scored by the same D on the same (noised) kind of input that D learned on."""
    if config.instance_noise <= 0:
        return images
    return images + instance_noise_std(config, step) * rng.normal(ops.shape(images))


# -- label smoothing and flipping ----------------------------------------------------------------------------
def flip_mask(config, batch, rng):
    """1.0 where D is told the opposite label this step (label flipping), else 0.0; a scalar 0 when off."""
    if config.label_flip <= 0:
        return 0.0
    return ops.cast(rng.uniform((batch,)) < config.label_flip, "float32")


def discriminator_targets(config, flip):
    """(real target, fake target) per example: one-sided smoothing puts 1 - label_smoothing on the REAL side only
    (smoothing the fake side would reward G for staying where D is unsure); flipped examples swap the two."""
    real = 1.0 - config.label_smoothing
    return real * (1.0 - flip), real * flip


# -- the accuracy-based D schedule -----------------------------------------------------------------------------
RUNNING_ACCURACY_MOMENTUM = 0.98


def d_may_update(running_accuracy, config):
    """True while D's running accuracy is below the threshold (or the schedule is off): a D that wins too easily
    is held so G can catch up."""
    if config.d_accuracy_threshold <= 0:
        return True
    return running_accuracy < config.d_accuracy_threshold


def next_running_accuracy(running_accuracy, batch_accuracy):
    return RUNNING_ACCURACY_MOMENTUM * running_accuracy + (1.0 - RUNNING_ACCURACY_MOMENTUM) * batch_accuracy


# -- EMA of G --------------------------------------------------------------------------------------------------
def ema_decay(config, step):
    """EMA weight: 0 (copy G) until ema_start, then the configured decay."""
    return ops.where(ops.cast(step, "int32") < config.ema_start, 0.0, config.ema_decay)


def ema_update(ema, current, decay):
    """One EMA step: decay * ema + (1 - decay) * current."""
    return decay * ema + (1.0 - decay) * current


# -- differentiable augmentation (DiffAugment, Zhao et al. 2020) ----------------------------------------------
TRANSLATION_RATIO = 1 / 8  # the largest shift, as a share of the side
CUTOUT_RATIO = 1 / 2  # the erased square's side, as a share of the image's


def augment(images, config, rng):
    """The augmentations named in config.augment, drawn afresh per image, on everything D judges: real images in
    D's step, fakes in D's and in G's. Every operation is differentiable in the image, so G is trained through them;
    D never sees an un-augmented image, so it cannot learn the augmentations as a sign of fakes (the leak that
    augmenting real images alone causes). Published gains are largest with few photos and a D that overfits."""
    for name in config.augment:
        images = AUGMENTATIONS[name](images, rng)
    return images


def _per_image(images, rng):
    return rng.uniform((ops.shape(images)[0], 1, 1, 1))


def _color(images, rng):
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] (images in [-1, 1]). Colour attributes (hair,
    pale skin) are what a colour-jittered real image no longer shows plainly: measure before using it here."""
    images = images + (_per_image(images, rng) - 0.5)
    mean = ops.mean(images, axis=3, keepdims=True)
    images = (images - mean) * (_per_image(images, rng) * 2.0) + mean
    mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
    return (images - mean) * (_per_image(images, rng) + 0.5) + mean


def _random_offsets(rng, batch, count):
    """Integers uniform in [0, count) per image, shape (batch,)."""
    return ops.cast(ops.minimum(ops.floor(rng.uniform((batch,)) * count), count - 1), "int32")


def _translation(images, rng):
    """Shift each image by whole pixels, up to TRANSLATION_RATIO of its side each way; zeros (mid-grey) fill in."""
    batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    shifted = images
    for axis, size in ((1, height), (2, width)):
        most = int(size * TRANSLATION_RATIO)
        shift = _random_offsets(rng, batch, 2 * most + 1) - most
        source = ops.arange(size, dtype="int32")[None, :] - shift[:, None]  # (batch, size): where each pixel comes from
        inside = ops.cast((source >= 0) & (source < size), images.dtype)
        index = ops.clip(source, 0, size - 1)
        if axis == 1:
            index = ops.broadcast_to(index[:, :, None, None], ops.shape(shifted))
            shifted = ops.take_along_axis(shifted, index, axis=1) * inside[:, :, None, None]
        else:
            index = ops.broadcast_to(index[:, None, :, None], ops.shape(shifted))
            shifted = ops.take_along_axis(shifted, index, axis=2) * inside[:, None, :, None]
    return shifted


def _cutout(images, rng):
    """Zero one square of CUTOUT_RATIO of the side per image, centred anywhere (clipped at the edges)."""
    batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    hole = None
    for size in (height, width):
        half = int(size * CUTOUT_RATIO) // 2
        centre = _random_offsets(rng, batch, size)
        offset = ops.arange(size, dtype="int32")[None, :] - centre[:, None]
        inside = (offset >= -half) & (offset < half)  # (batch, size)
        hole = inside[:, :, None] if hole is None else hole & inside[:, None, :]
    return images * (1.0 - ops.cast(hole, images.dtype))[:, :, :, None]


# config.AUGMENTATIONS names these (the config checks names without importing Keras)
AUGMENTATIONS = {"color": _color, "translation": _translation, "cutout": _cutout}
