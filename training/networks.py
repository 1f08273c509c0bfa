"""Generator and discriminator, written once in Keras 3 so they run on the TensorFlow and the JAX backend.

Both networks take ``[noise_or_images, attributes]`` where attributes are 0/1 floats in the config's order.

facegen (ours), at resolution R, for R = 64:
  G: [z, a] -> Dense -> 4x4xC -> (ConvTranspose 4x4/2, LeakyReLU, PixelNorm) x 4 -> Conv 3x3 -> tanh, RxRx3.
     The attribute vector also enters every block as constant feature maps, so G cannot ignore it.
  D: image -> (SN Conv 4x4/2, LeakyReLU) down to 4x4 -> minibatch std -> SN Conv 3x3 -> SN Dense = features phi;
     logit = w.phi + <embed(a), phi> (projection conditioning); attribute logits = Dense(phi) (AC-GAN head).
artiface (the seeds' DCGAN, the baseline): z -> Dense 32x32x512 -> ConvTranspose 256/128/64/3, 5x5 -> 128x128,
     with the attributes tiled onto the 32x32 map; D: Conv 64/128/256/512 5x5/2 -> Dense logit + attribute head.
Encoder (optional, config.encoder; the AE-AC-GAN seed's): image -> (Conv 4x4/2, LeakyReLU) down to 4x4 (D's widths)
     -> Conv 3x3 -> Dense features -> (Dense z estimate [latent_size], Dense attribute logits [A]). No spectral norm,
     no minibatch statistics: a photo's code depends on the photo alone, not on the batch it is encoded in.
"""

import hashlib
import math

import keras
from keras import layers, ops


def init(config, path: str, stddev: float = 0.02):
    """DCGAN's N(0, 0.02) initialiser with a seed of its own, derived from (config.seed, the layer's path).

    One shared unseeded initialiser would draw its seed once at import: runs would not repeat, and every layer of
    the same shape would start from the same values.
    """
    digest = hashlib.sha256(f"{config.seed}/{path}".encode()).digest()
    return keras.initializers.RandomNormal(stddev=stddev, seed=int.from_bytes(digest[:4], "little") >> 1)


def signed(attrs):
    """0/1 attributes as -1/+1, so an attribute that is off still says something to the network."""
    return attrs * 2.0 - 1.0


def tile_attributes(attrs, feature_map):
    """Attributes broadcast to constant feature maps the spatial size of ``feature_map``."""
    shape = ops.shape(feature_map)
    attrs = ops.cast(signed(attrs), feature_map.dtype)
    return ops.broadcast_to(attrs[:, None, None, :], (shape[0], shape[1], shape[2], ops.shape(attrs)[-1]))


class PixelNorm(layers.Layer):
    """Normalise each pixel's feature vector to unit length (ProGAN): no batch statistics, so training and
    inference behave the same and the exported generator needs no moving averages."""

    def call(self, x):
        x32 = ops.cast(x, "float32")
        return ops.cast(x32 * ops.rsqrt(ops.mean(ops.square(x32), axis=-1, keepdims=True) + 1e-8), x.dtype)


class MinibatchStd(layers.Layer):
    """Append the batch's mean feature standard deviation as one channel: a collapsed G is easy to spot."""

    def call(self, x):
        x32 = ops.cast(x, "float32")
        std = ops.sqrt(ops.var(x32, axis=0) + 1e-8)
        stat = ops.cast(ops.mean(std), x.dtype)
        shape = ops.shape(x)
        return ops.concatenate([x, ops.broadcast_to(stat, (shape[0], shape[1], shape[2], 1))], axis=-1)


class _SpectralNorm(layers.Layer):
    """Base for spectrally normalised layers: kernel / sigma, sigma by one power iteration per training call.

    keras.layers.SpectralNormalization writes the normalised kernel back into the trainable variable, which a
    stateless JAX train step drops; here the kernel stays raw and only the power-iteration vector is state.
    """

    def __init__(self, config, spectral_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.spectral_norm = spectral_norm
        self.kernel_init = init(config, f"discriminator/{self.name}/kernel")
        self.u_init = init(config, f"discriminator/{self.name}/sn_u", stddev=1.0)

    def _build_u(self, out_features):
        if self.spectral_norm:
            self.u = self.add_weight(shape=(1, out_features), initializer=self.u_init, trainable=False, name="sn_u")

    def normalised_kernel(self, training):
        kernel = ops.cast(self.kernel, "float32")
        if not self.spectral_norm:
            return kernel
        matrix = ops.reshape(kernel, (-1, kernel.shape[-1]))
        u = ops.cast(self.u, "float32")
        v = ops.stop_gradient(_l2_normalise(ops.matmul(u, ops.transpose(matrix))))
        u_new = ops.stop_gradient(_l2_normalise(ops.matmul(v, matrix)))
        sigma = ops.sum(ops.matmul(v, matrix) * u_new)
        if training:
            self.u.assign(u_new)
        return kernel / sigma


def _l2_normalise(x):
    return x * ops.rsqrt(ops.sum(ops.square(x)) + 1e-12)


class SNConv2D(_SpectralNorm):
    def __init__(self, config, filters, kernel_size, strides=1, spectral_norm=True, **kwargs):
        super().__init__(config, spectral_norm, **kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(shape=(k, k, input_shape[-1], self.filters), initializer=self.kernel_init, name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
        self._build_u(self.filters)

    def call(self, x, training=False):
        kernel = ops.cast(self.normalised_kernel(training), x.dtype)
        return ops.conv(x, kernel, strides=self.strides, padding="same") + ops.cast(self.bias, x.dtype)


class SNDense(_SpectralNorm):
    def __init__(self, config, units, use_bias=True, spectral_norm=True, **kwargs):
        super().__init__(config, spectral_norm, **kwargs)
        self.units, self.use_bias = units, use_bias

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer=self.kernel_init, name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias") if self.use_bias else None
        self._build_u(self.units)

    def call(self, x, training=False):
        y = ops.matmul(x, ops.cast(self.normalised_kernel(training), x.dtype))
        return y + ops.cast(self.bias, x.dtype) if self.use_bias else y


class FacegenGenerator(keras.Model):
    def __init__(self, config, **kwargs):
        super().__init__(name="generator", **kwargs)
        self.config = config
        self.conditional = config.num_attributes > 0
        c4 = config.channels(4, config.g_width, config.g_max_width, config.g_min_width)
        self.base = layers.Dense(4 * 4 * c4, kernel_initializer=init(config, "generator/base"), name="base")
        self.base_shape = (4, 4, c4)
        self.blocks = []
        res = 8
        while res <= config.resolution:
            channels = config.channels(res, config.g_width, config.g_max_width, config.g_min_width)
            self.blocks.append(layers.Conv2DTranspose(channels, 4, strides=2, padding="same",
                                                      kernel_initializer=init(config, f"generator/up{res}"),
                                                      name=f"up{res}"))
            res *= 2
        self.act = layers.LeakyReLU(0.2)
        self.norm = PixelNorm()
        self.to_rgb = layers.Conv2D(3, 3, padding="same", kernel_initializer=init(config, "generator/to_rgb"),
                                    dtype="float32", name="to_rgb")
        # ProGAN's fade-in: the half-size image (to_rgb_prev on the block below the top one), upsampled, blended
        # with the top block's image by `fade` (0 -> 1 over fade_in_steps; the train step sets it from the step).
        self.fades_in = config.fade_in_steps > 0
        if self.fades_in:
            self.to_rgb_prev = layers.Conv2D(3, 3, padding="same", dtype="float32", name="to_rgb_prev",
                                             kernel_initializer=init(config, "generator/to_rgb_prev"))
            self.upsample = layers.UpSampling2D(2, interpolation="bilinear", dtype="float32", name="upsample_prev")
            self.fade = keras.Variable(0.0, trainable=False, dtype="float32", name="fade")

    def call(self, inputs, training=False):
        z, attrs = inputs
        h = ops.concatenate([z, signed(attrs)], axis=-1) if self.conditional else z
        h = self.norm(self.act(ops.reshape(self.base(h), (-1, *self.base_shape))))
        below_top = h
        for block in self.blocks:
            below_top = h
            if self.conditional:
                h = ops.concatenate([h, tile_attributes(attrs, h)], axis=-1)
            h = self.norm(self.act(block(h)))
        image = ops.tanh(self.to_rgb(h))
        if not self.fades_in:
            return image
        previous = self.upsample(ops.tanh(self.to_rgb_prev(below_top)))
        return previous + ops.cast(self.fade, image.dtype) * (image - previous)


class FacegenDiscriminator(keras.Model):
    def __init__(self, config, **kwargs):
        super().__init__(name="discriminator", **kwargs)
        self.config = config
        sn = config.spectral_norm
        self.downs = []
        res = config.resolution
        while res > 4:
            res //= 2
            channels = config.channels(res, config.d_width, config.d_max_width, config.d_min_width)
            self.downs.append(SNConv2D(config, channels, 4, strides=2, spectral_norm=sn, name=f"down{res}"))
        c4 = config.channels(4, config.d_width, config.d_max_width, config.d_min_width)
        self.mbstd = MinibatchStd() if config.minibatch_std else None
        self.conv4 = SNConv2D(config, c4, 3, spectral_norm=sn, name="conv4")
        self.features = SNDense(config, c4, spectral_norm=sn, name="features")
        self.logit = SNDense(config, 1, spectral_norm=sn, name="logit")
        self.act = layers.LeakyReLU(0.2)
        a = config.num_attributes
        use_projection = a > 0 and config.conditioning in ("projection", "both")
        use_ac = a > 0 and config.conditioning in ("acgan", "both")
        self.projection = SNDense(config, c4, use_bias=False, spectral_norm=sn, name="projection") if use_projection else None
        self.classifier = (layers.Dense(a, kernel_initializer=init(config, "discriminator/classifier"), dtype="float32",
                                        name="classifier") if use_ac else None)

    def call(self, inputs, training=False, return_features=False):
        """(logit, attribute logits), and D's features phi too with ``return_features`` (the encoder's feature loss)."""
        images, attrs = inputs
        h = images
        for down in self.downs:
            h = self.act(down(h, training=training))
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = self.act(self.conv4(h, training=training))
        phi = self.act(self.features(ops.reshape(h, (ops.shape(h)[0], -1)), training=training))
        logit = ops.cast(self.logit(phi, training=training)[:, 0], "float32")
        if self.projection is not None:
            embed = self.projection(ops.cast(signed(attrs), phi.dtype), training=training)
            logit = logit + ops.cast(ops.sum(embed * phi, axis=-1), "float32")
        class_logits = self.classifier(phi) if self.classifier is not None else ops.zeros((ops.shape(h)[0], 0))
        return (logit, class_logits, phi) if return_features else (logit, class_logits)


class ArtifaceGenerator(keras.Model):
    """The seeds' DCGAN generator: one huge Dense layer (most of its ~58M parameters) and 5x5 transposed convs."""

    def __init__(self, config, **kwargs):
        super().__init__(name="generator", **kwargs)
        self.conditional = config.num_attributes > 0
        self.base = layers.Dense(32 * 32 * 512, kernel_initializer=init(config, "generator/base"), name="base")
        self.base_norm = layers.BatchNormalization(name="base_bn")
        self.ups = [
            layers.Conv2DTranspose(256, 5, strides=2, padding="same", kernel_initializer=init(config, "generator/up64"), name="up64"),
            layers.Conv2DTranspose(128, 5, strides=2, padding="same", kernel_initializer=init(config, "generator/up128"), name="up128"),
            layers.Conv2DTranspose(64, 5, strides=1, padding="same", kernel_initializer=init(config, "generator/conv128"), name="conv128"),
        ]
        self.norms = [layers.BatchNormalization(name=f"bn{i}") for i in range(len(self.ups))]
        self.to_rgb = layers.Conv2DTranspose(3, 5, padding="same", kernel_initializer=init(config, "generator/to_rgb"),
                                             dtype="float32", name="to_rgb")
        self.act = layers.LeakyReLU(0.2)

    def call(self, inputs, training=False):
        z, attrs = inputs
        h = self.act(self.base_norm(self.base(z), training=training))
        h = ops.reshape(h, (-1, 32, 32, 512))
        if self.conditional:
            h = ops.concatenate([h, tile_attributes(attrs, h)], axis=-1)
        for up, norm in zip(self.ups, self.norms):
            h = self.act(norm(up(h), training=training))
        return ops.tanh(self.to_rgb(h))


class ArtifaceDiscriminator(keras.Model):
    def __init__(self, config, **kwargs):
        super().__init__(name="discriminator", **kwargs)
        self.downs = [layers.Conv2D(c, 5, strides=2, padding="same", kernel_initializer=init(config, f"discriminator/down{c}"),
                                    name=f"down{c}") for c in (64, 128, 256, 512)]
        self.act = layers.LeakyReLU(0.2)
        self.logit = layers.Dense(1, kernel_initializer=init(config, "discriminator/logit"), dtype="float32", name="logit")
        a = config.num_attributes
        self.classifier = (layers.Dense(a, kernel_initializer=init(config, "discriminator/classifier"), dtype="float32",
                                        name="classifier") if a else None)

    def call(self, inputs, training=False, return_features=False):
        images, _attrs = inputs
        h = images
        for down in self.downs:
            h = self.act(down(h))
        h = ops.reshape(h, (ops.shape(h)[0], -1))
        logit = self.logit(h)[:, 0]
        class_logits = self.classifier(h) if self.classifier is not None else ops.zeros((ops.shape(h)[0], 0))
        return (logit, class_logits, h) if return_features else (logit, class_logits)


class Encoder(keras.Model):
    """E(image in [-1, 1]) -> (z estimate [latent_size], attribute logits [A]), for either architecture."""

    def __init__(self, config, **kwargs):
        super().__init__(name="encoder", **kwargs)
        self.downs = []
        res = config.resolution
        while res > 4:
            res //= 2
            channels = config.channels(res, config.d_width, config.d_max_width, config.d_min_width)
            self.downs.append(layers.Conv2D(channels, 4, strides=2, padding="same",
                                            kernel_initializer=init(config, f"encoder/down{res}"), name=f"down{res}"))
        c4 = config.channels(4, config.d_width, config.d_max_width, config.d_min_width)
        self.conv4 = layers.Conv2D(c4, 3, padding="same", kernel_initializer=init(config, "encoder/conv4"),
                                   name="conv4")
        self.features = layers.Dense(c4, kernel_initializer=init(config, "encoder/features"), name="features")
        self.act = layers.LeakyReLU(0.2)
        # The heads compute in float32 (like G's to_rgb and D's classifier): the code is what G is fed.
        self.to_z = layers.Dense(config.latent_size, kernel_initializer=init(config, "encoder/z"), dtype="float32",
                                 name="z")
        a = config.num_attributes
        self.to_attributes = (layers.Dense(a, kernel_initializer=init(config, "encoder/attributes"), dtype="float32",
                                           name="attributes") if a else None)

    def call(self, images, training=False):
        h = images
        for down in self.downs:
            h = self.act(down(h))
        h = self.act(self.conv4(h))
        phi = self.act(self.features(ops.reshape(h, (ops.shape(h)[0], -1))))
        z = self.to_z(phi)
        logits = (self.to_attributes(phi) if self.to_attributes is not None
                  else ops.zeros((ops.shape(phi)[0], 0), "float32"))
        return z, logits


def build_generator(config, batch=2):
    """A built generator (weights created) for the config's architecture."""
    model = (ArtifaceGenerator if config.architecture == "artiface" else FacegenGenerator)(config)
    model([ops.zeros((batch, config.latent_size)), ops.zeros((batch, config.num_attributes))])
    return model


def build_discriminator(config, batch=2):
    model = (ArtifaceDiscriminator if config.architecture == "artiface" else FacegenDiscriminator)(config)
    r = config.resolution
    model([ops.zeros((batch, r, r, 3)), ops.zeros((batch, config.num_attributes))])
    return model


def build_encoder(config, batch=2):
    """A built encoder (weights created): for runs with ``config.encoder``."""
    model = Encoder(config)
    r = config.resolution
    model(ops.zeros((batch, r, r, 3)))
    return model


def count_parameters(model) -> int:
    return int(sum(math.prod(v.shape) for v in model.trainable_variables))
