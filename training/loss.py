"""GAN objectives and stabilisers in backend-neutral keras.ops; the train steps supply gradients and state.

``g_forward(z, attrs) -> images`` and ``d_forward(images, attrs) -> (logit, attribute_logits)`` are callables
from the backend's train step; ``rng`` has ``normal(shape)`` and ``uniform(shape)``.
"""

from keras import ops


def bce_with_logits(logits, targets):
    """Mean binary cross-entropy on logits, the numerically stable form."""
    logits = ops.cast(logits, "float32")
    return ops.mean(ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits))))


def real_batch(images_u8, attributes, index, config, rng):
    """A batch of real images in [-1, 1] (randomly mirrored) and their attributes, gathered on the device."""
    images = ops.cast(ops.take(images_u8, index, axis=0), "float32") / 127.5 - 1.0
    if config.flip_images:
        mirror = rng.uniform((ops.shape(images)[0], 1, 1, 1)) < 0.5
        images = ops.where(mirror, ops.flip(images, axis=2), images)
    return images, ops.take(attributes, index, axis=0)


def instance_noise_std(config, step):
    """Instance noise on D's inputs, annealed linearly to zero (keeps early D from separating the supports)."""
    if config.instance_noise <= 0:
        return 0.0
    progress = ops.minimum(ops.cast(step, "float32") / float(config.instance_noise_steps), 1.0)
    return config.instance_noise * (1.0 - progress)


def discriminator_objective(g_forward, d_forward, real, real_attrs, cond_attrs, step, config, rng):
    batch = ops.shape(real)[0]
    z = rng.normal((batch, config.latent_size))
    fake = ops.stop_gradient(ops.cast(g_forward(z, cond_attrs), "float32"))
    if config.instance_noise > 0:
        std = instance_noise_std(config, step)
        real = real + std * rng.normal(ops.shape(real))
        fake = fake + std * rng.normal(ops.shape(fake))
    real_logit, real_class = d_forward(real, real_attrs)
    fake_logit, _ = d_forward(fake, cond_attrs)
    real_logit, fake_logit = ops.cast(real_logit, "float32"), ops.cast(fake_logit, "float32")

    # Label flipping: for a random fraction of the batch, D is told the opposite.
    flip = ops.cast(rng.uniform((batch,)) < config.label_flip, "float32") if config.label_flip > 0 else 0.0
    if config.loss == "hinge":
        sign = 1.0 - 2.0 * flip
        adversarial = ops.mean(ops.relu(1.0 - sign * real_logit)) + ops.mean(ops.relu(1.0 + sign * fake_logit))
    else:
        real_target = 1.0 - config.label_smoothing
        real_targets = real_target * (1.0 - flip) + 0.0 * flip
        fake_targets = real_target * flip
        adversarial = bce_with_logits(real_logit, real_targets) + bce_with_logits(fake_logit, fake_targets)

    loss = adversarial
    metrics = {"d_loss": adversarial,
               "d_accuracy": 0.5 * (ops.mean(ops.cast(real_logit > 0, "float32"))
                                    + ops.mean(ops.cast(fake_logit < 0, "float32"))),
               "d_real": ops.mean(real_logit), "d_fake": ops.mean(fake_logit)}
    if config.num_attributes and config.conditioning in ("acgan", "both"):
        # The auxiliary classifier learns attributes from real images only, so it cannot learn G's mistakes.
        class_loss = bce_with_logits(real_class, real_attrs)
        loss = loss + config.ac_weight * class_loss
        metrics["d_class"] = class_loss
    return loss, metrics


def generator_objective(g_forward, d_forward, cond_attrs, config, rng):
    batch = ops.shape(cond_attrs)[0]
    z = rng.normal((batch, config.latent_size))
    fake = ops.cast(g_forward(z, cond_attrs), "float32")
    logit, class_logits = d_forward(fake, cond_attrs)
    logit = ops.cast(logit, "float32")
    adversarial = -ops.mean(logit) if config.loss == "hinge" else bce_with_logits(logit, ops.ones_like(logit))
    loss = adversarial
    metrics = {"g_loss": adversarial}
    if config.num_attributes and config.conditioning in ("acgan", "both"):
        class_loss = bce_with_logits(class_logits, cond_attrs)
        loss = loss + config.ac_weight * class_loss
        metrics["g_class"] = class_loss
    return loss, metrics


def ema_decay(config, step):
    """EMA weight: 0 (copy G) until ema_start, then the configured decay."""
    return ops.where(ops.cast(step, "int32") < config.ema_start, 0.0, config.ema_decay)
