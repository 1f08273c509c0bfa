"""Growing a trained model to twice its resolution (ProGAN): warm-start G and the encoder from a model folder at
half the resolution, and fade the new top block in.

What is kept: every layer of the smaller model whose name and shape match in the larger one. With the 128 px
config's widths (g_width 8, g_min_width 16) that is all of G below the new top block (the dense base and up8..up64),
the smaller model's to_rgb twice (as to_rgb_prev, the fade's half-size image, and as the new top's to_rgb, which
sees as many channels), and the encoder from its third block down. D starts afresh: a model folder holds no D.

The fade: alpha = step / fade_in_steps (clipped to 1) blends G's output from the upsampled half-size image to the
new top block's image, and D's real images from their blurred (downsampled and upsampled) version to the sharp photo,
so D never sees a sharpness gap G cannot yet close.
"""

from pathlib import Path

import numpy as np
from keras import ops

from facegen import model_folder
from training.usage_error import UsageError


def fade_alpha(step, config):
    """The fade's blend weight at ``step`` (a tensor or int): 0 until d_warmup_steps, then rising to 1 over
    fade_in_steps."""
    rising = (ops.cast(step, "float32") - float(config.d_warmup_steps)) / float(config.fade_in_steps)
    return ops.clip(rising, 0.0, 1.0)


def fade_real(images, step, config):
    """Real images as D sees them during the fade: blurred by 2x2 average pooling and bilinear upsampling, then
    blended towards the sharp image by the step's alpha (the same alpha G's output uses)."""
    if not config.fade_in_steps:
        return images
    shape = ops.shape(images)
    low = ops.average_pool(images, 2, strides=2, padding="valid")
    blurred = ops.image.resize(low, (shape[1], shape[2]), interpolation="bilinear")
    return blurred + fade_alpha(step, config) * (images - blurred)


def layer_kernel(layer):
    # Keras 3's Dense keeps its kernel as `_kernel` (LoRA support); the convolutions as `kernel`.
    return layer.kernel if hasattr(layer, "kernel") else getattr(layer, "_kernel", None)


def saved_layers(saved_model, attribute: str, block_names) -> dict:
    """{layer name: (kernel, bias) numpy} of a restored SavedModel's generator ("model") or "encoder", named as the
    Keras networks name them (``block_names``: the generator's up blocks or the encoder's down blocks, in order);
    also read by export --upgrade, which rebuilds a model folder's networks from them."""
    net = getattr(saved_model, attribute)
    found = {}
    if attribute == "model":
        found["base"] = net.base
        for block, name in zip(net.blocks, block_names):
            found[name] = block
        found["to_rgb"] = net.to_rgb
        if hasattr(net, "to_rgb_prev"):  # exported mid-fade: the half-size image's layer
            found["to_rgb_prev"] = net.to_rgb_prev
    else:
        for layer, name in zip(net.downs, block_names):
            found[name] = layer
        found.update(conv4=net.conv4, features=net.features, z=net.to_z, attributes=net.to_attributes)
    return {name: (np.asarray(layer_kernel(layer)), np.asarray(layer.bias)) for name, layer in found.items()
            if layer is not None}


def _copy_matching(model, weights: dict, renames: dict) -> list:
    """Copy (kernel, bias) into ``model``'s layers by name where the shapes match -> names copied."""
    copied = []
    for layer in model.layers if hasattr(model, "layers") else []:
        source = weights.get(renames.get(layer.name, layer.name))
        target = layer_kernel(layer)
        if source is None or target is None or tuple(target.shape) != source[0].shape:
            continue
        target.assign(source[0])
        layer.bias.assign(source[1])
        copied.append(layer.name)
    return copied


def warm_start(models, config) -> dict:
    """Load ``config.grow_from`` into G, its EMA copy and the encoder -> {"generator": [...], "encoder": [...]}."""
    import tensorflow as tf

    folder = Path(config.grow_from)
    try:
        manifest = model_folder.read_manifest(folder)
    except Exception as error:  # a missing or foreign folder: say which key of the config names it
        raise UsageError(f"config grow_from: {folder} is not a model folder ({error})") from None
    if int(manifest["resolution"]) * 2 != config.resolution:
        raise UsageError(f"config grow_from: {folder} is {manifest['resolution']} px; growing makes "
                         f"{config.resolution} px from {config.resolution // 2} px")
    if list(manifest["attributes"]) != list(config.attributes) or int(manifest["latent_size"]) != config.latent_size:
        raise UsageError(f"config grow_from: {folder} has other attributes or latent size than the config")
    saved = tf.saved_model.load(str(folder))
    half = config.resolution // 2
    ups = [f"up{8 * 2 ** i}" for i in range(int(np.log2(half)) - 2)]
    g_weights = saved_layers(saved, "model", ups)
    copied = {"generator": []}
    for generator in (models.generator, models.ema_generator):
        # to_rgb_prev (the fade's half-size image) is the smaller model's to_rgb, on the same features.
        copied["generator"] = _copy_matching(generator, g_weights, {"to_rgb_prev": "to_rgb"})
    if models.encoder is not None and hasattr(saved, "encoder"):
        downs = [f"down{half // 2 ** (i + 1)}" for i in range(int(np.log2(half)) - 2)]
        copied["encoder"] = _copy_matching(models.encoder, saved_layers(saved, "encoder", downs), {})
    return copied
