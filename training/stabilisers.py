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
