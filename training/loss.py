"""GAN objectives in backend-neutral keras.ops; the train steps supply the networks, gradients and state.

``g_forward(z, attrs) -> images`` and ``d_forward(images, attrs) -> (logit, attribute_logits)`` come from the
backend's train step; ``rng`` has ``normal(shape)`` and ``uniform(shape)``. The stabilisers are in stabilisers.py.
With the encoder on (config.encoder), ``e_forward(images) -> (z estimate, attribute logits)`` and, for the optional
feature loss, ``d_features(images, attrs) -> D's features`` come from the step too: generator_encoder_objective.
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
    real = stabilisers.add_instance_noise(stabilisers.augment(real, config, rng), config, step, rng)
    fake = stabilisers.add_instance_noise(stabilisers.augment(fake, config, rng), config, step, rng)
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


def _generator_terms(g_forward, d_forward, cond_attrs, step, config, rng):
    """G's objective, and the z and clean fakes it drew (the encoder's latent cycle reuses them)."""
    batch = ops.shape(cond_attrs)[0]
    z = rng.normal((batch, config.latent_size))
    clean = ops.cast(g_forward(z, cond_attrs), "float32")
    fake = stabilisers.add_instance_noise(stabilisers.augment(clean, config, rng), config, step, rng)
    logit, class_logits = d_forward(fake, cond_attrs)
    adversarial = g_adversarial(ops.cast(logit, "float32"), config)
    loss = adversarial
    metrics = {"g_loss": adversarial}
    if _uses_classifier(config):
        class_loss = bce_with_logits(class_logits, cond_attrs)
        loss = loss + config.ac_weight * class_loss
        metrics["g_class"] = class_loss
    return loss, metrics, z, clean


def generator_objective(g_forward, d_forward, cond_attrs, step, config, rng):
    loss, metrics, _, _ = _generator_terms(g_forward, d_forward, cond_attrs, step, config, rng)
    return loss, metrics


# -- the encoder (config.encoder) ------------------------------------------------------------------------------
def reconstruction_loss(rebuilt, real, config):
    """Pixel distance of the rebuilt image to the real one, in [-1, 1] units: mean |d| (l1) or mean d^2 (l2)."""
    difference = ops.cast(rebuilt, "float32") - ops.cast(real, "float32")
    if config.reconstruction_loss == "l2":
        return ops.mean(ops.square(difference))
    return ops.mean(ops.abs(difference))


def latent_cycle_loss(z_estimate, z):
    """Mean squared error of E's estimate of the z a fake was drawn from."""
    return ops.mean(ops.square(ops.cast(z_estimate, "float32") - ops.cast(z, "float32")))


def feature_loss(rebuilt_features, real_features):
    """Mean squared distance of D's features of the rebuilt image to those of the real one (held fixed)."""
    return ops.mean(ops.square(ops.cast(rebuilt_features, "float32")
                               - ops.stop_gradient(ops.cast(real_features, "float32"))))


def encoder_objective(g_forward, e_forward, real, real_attrs, z, fake, config, d_features=None):
    """The encoder's terms, weighted by the config; (loss, metrics).

    reconstruction  |G(E_z(x), a) - x|        reaches E and G (G must rebuild real faces from their codes)
    feature         |phi(G(E_z(x), a)) - phi(x)|^2, D's features, only when feature_weight > 0; reaches E and G
    attributes      BCE(E_a(x), a)            reaches E only
    cycle           |E_z(G(z, a)) - z|^2      reaches E only: the fake is held fixed, so G is not asked to be
                                              easy to invert; E learns that z does not carry the attributes
    x, a: a real batch and its attributes; z, fake: the draws and clean fakes of G's own objective this step.
    """
    z_real, attribute_logits = e_forward(real)
    rebuilt = ops.cast(g_forward(z_real, real_attrs), "float32")
    reconstruction = reconstruction_loss(rebuilt, real, config)
    loss = config.reconstruction_weight * reconstruction
    metrics = {"e_reconstruction": reconstruction}
    if config.feature_weight > 0 and d_features is not None:
        features = feature_loss(d_features(rebuilt, real_attrs), d_features(real, real_attrs))
        loss = loss + config.feature_weight * features
        metrics["e_features"] = features
    if config.num_attributes:
        attributes = bce_with_logits(attribute_logits, real_attrs)
        loss = loss + config.encoder_attribute_weight * attributes
        metrics["e_attributes"] = attributes
        metrics["e_attribute_accuracy"] = ops.mean(
            ops.cast(ops.cast(attribute_logits > 0, "float32") == ops.cast(real_attrs, "float32"), "float32"))
    z_back, _ = e_forward(ops.stop_gradient(fake))
    cycle = latent_cycle_loss(z_back, ops.stop_gradient(z))
    loss = loss + config.cycle_weight * cycle
    metrics["e_cycle"] = cycle
    metrics["e_loss"] = loss
    return loss, metrics


def generator_encoder_objective(g_forward, d_forward, e_forward, real_batch, cond_attrs, step, config, rng,
                                d_features=None):
    """G's objective plus the encoder's, as one scalar: differentiated with respect to G's and E's weights together,
    G gets its adversarial and auxiliary terms plus reconstruction (and feature), E gets every encoder term.

    ``real_batch(rng) -> (x, a)`` gives the real batch E trains on; it is called after G's own draws, so G's z and
    noise are the ones generator_objective would draw: with every encoder weight 0, G's update is the plain GAN's."""
    g_loss, metrics, z, fake = _generator_terms(g_forward, d_forward, cond_attrs, step, config, rng)
    real, real_attrs = real_batch(rng)
    e_loss, e_metrics = encoder_objective(g_forward, e_forward, real, real_attrs, z, fake, config, d_features)
    return g_loss + e_loss, {**metrics, **e_metrics}
