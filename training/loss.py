"""GAN objectives in backend-neutral keras.ops; the train steps supply the networks, gradients and state.

``g_forward(z, attrs) -> images`` and ``d_forward(images, attrs) -> (logit, attribute_logits)`` come from the
backend's train step; ``rng`` has ``normal(shape)`` and ``uniform(shape)``. The stabilisers are in stabilisers.py.
"""

from keras import ops

from training import stabilisers


def bce_with_logits(logits, targets):
    """Mean binary cross-entropy on logits, the numerically stable form."""
    logits = ops.cast(logits, "float32")
    return ops.mean(ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits))))


def d_adversarial(real_logit, fake_logit, config, flip=0.0):
    """D's adversarial loss. ``flip``: per-example 1.0 where the labels are swapped (label flipping)."""
    if config.loss == "hinge":
        sign = 1.0 - 2.0 * flip
        return ops.mean(ops.relu(1.0 - sign * real_logit)) + ops.mean(ops.relu(1.0 + sign * fake_logit))
    real_targets, fake_targets = stabilisers.discriminator_targets(config, flip)
    return bce_with_logits(real_logit, real_targets) + bce_with_logits(fake_logit, fake_targets)


def g_adversarial(fake_logit, config):
    """G's adversarial loss: the non-saturating form (D should call the fakes real: target 1) or hinge's -D(G(z))."""
    if config.loss == "hinge":
        return -ops.mean(fake_logit)
    return bce_with_logits(fake_logit, ops.ones_like(fake_logit))


def _uses_classifier(config) -> bool:
    return bool(config.num_attributes) and config.conditioning in ("acgan", "both")


def discriminator_objective(g_forward, d_forward, real, real_attrs, cond_attrs, step, config, rng):
    batch = ops.shape(real)[0]
    z = rng.normal((batch, config.latent_size))
    fake = ops.stop_gradient(ops.cast(g_forward(z, cond_attrs), "float32"))
    real = stabilisers.add_instance_noise(real, config, step, rng)
    fake = stabilisers.add_instance_noise(fake, config, step, rng)
    real_logit, real_class = d_forward(real, real_attrs)
    fake_logit, _ = d_forward(fake, cond_attrs)
    real_logit, fake_logit = ops.cast(real_logit, "float32"), ops.cast(fake_logit, "float32")
    adversarial = d_adversarial(real_logit, fake_logit, config, stabilisers.flip_mask(config, batch, rng))

    loss = adversarial
    metrics = {"d_loss": adversarial,
               "d_accuracy": 0.5 * (ops.mean(ops.cast(real_logit > 0, "float32"))
                                    + ops.mean(ops.cast(fake_logit < 0, "float32"))),
               "d_real": ops.mean(real_logit), "d_fake": ops.mean(fake_logit)}
    if _uses_classifier(config):
        # The auxiliary classifier learns attributes from real images only, so it cannot learn G's mistakes.
        class_loss = bce_with_logits(real_class, real_attrs)
        loss = loss + config.ac_weight * class_loss
        metrics["d_class"] = class_loss
    return loss, metrics


def generator_objective(g_forward, d_forward, cond_attrs, step, config, rng):
    batch = ops.shape(cond_attrs)[0]
    z = rng.normal((batch, config.latent_size))
    fake = ops.cast(g_forward(z, cond_attrs), "float32")
    fake = stabilisers.add_instance_noise(fake, config, step, rng)
    logit, class_logits = d_forward(fake, cond_attrs)
    adversarial = g_adversarial(ops.cast(logit, "float32"), config)
    loss = adversarial
    metrics = {"g_loss": adversarial}
    if _uses_classifier(config):
        class_loss = bce_with_logits(class_logits, cond_attrs)
        loss = loss + config.ac_weight * class_loss
        metrics["g_class"] = class_loss
    return loss, metrics
