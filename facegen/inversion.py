"""Per-photo inversion: the encoder's guess refined on the one photo, so that the rebuild is closer to the person.

    framed photo (uint8 [S, S, 3]) + the encoder's noise and found attributes
      -> (a) latent optimisation: Adam on the noise and the attribute logits for ``latent_steps`` steps, on a pixel
             loss (mean squared error in [-1, 1], plus LOW_PASS_WEIGHT times that of 4x4-average-pooled images, so
             the face's layout counts as well as its edges)
      -> (b) pivotal tuning (PTI): Adam on a copy of G's weights for ``tune_steps`` steps, on the same loss around
             the noise found in (a)
      -> the rebuild G'(z, a) and each edit G'(z, a with the attribute set) from the tuned copy, uint8 by the
         contract's pixel rule.

Everything goes through the SavedModel's PIXELS_SIGNATURE (facegen/model_folder.py: float32, differentiable), never
through training code: app/ and training/identity.py import this module, so the figures describe what is served.
The weights tuned are those of a SavedModel instance that this :class:`Inverter` loaded for itself, reset to the
exported values before every photo and only ever touched under its lock: the instance that /api/face generates
with is never written to. One photo at a time per Inverter (the lock), and the loop is one traced TensorFlow
function with fixed step counts, so the same photo and query give the same bytes.

No face-recognition network or attribute classifier is a loss here: those are the judges (training/identity.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from facegen import attributes, model_folder, photo_edit

# Chosen on the validation photos (docs/SERVICE.md's identity section has the figures and the command).
LATENT_STEPS = 10  # 10, 15, 20 and 30 gave the same figures on validation photos; 10 is the cheapest
TUNE_STEPS = 30
LATENT_RATE = 0.05  # Adam's step on the noise and the attribute logits
TUNE_RATE = 3e-4  # Adam's step on G's weights (pivotal tuning)
LOW_PASS_WEIGHT = 1.0
LOW_PASS = 4  # the low-pass term's average-pooling window, in pixels
FOUND_LOGIT = 3.0  # the attribute logits start at +-this (sigmoid 0.95 / 0.05) from the found 0/1 vector
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8
# An edit vector's entry that keeps the refined attribute value: NaN, since a pushed value may be any number (a gain
# of 2 turns an attribute that is on into -1).
KEEP = np.nan


@dataclass(frozen=True)
class Settings:
    """One inversion recipe: steps and rates of the two stages (0 steps: the stage is skipped)."""

    latent_steps: int = LATENT_STEPS
    tune_steps: int = TUNE_STEPS
    latent_rate: float = LATENT_RATE
    tune_rate: float = TUNE_RATE
    low_pass_weight: float = LOW_PASS_WEIGHT


@dataclass(frozen=True)
class Inverted:
    """What an inversion gives: the rebuild and the edits (uint8 [S, S, 3] each, in the order asked), and the
    refined noise and attribute values (float32) they were made from."""

    rebuilt: np.ndarray
    edits: list
    noise: np.ndarray
    attributes: np.ndarray


def pixel_loss(images, target, low_pass_weight):
    """Mean squared error of [N, S, S, 3] images in [-1, 1], plus ``low_pass_weight`` times that of their
    LOW_PASS x LOW_PASS averages."""
    import tensorflow as tf

    loss = tf.reduce_mean(tf.square(images - target))
    if low_pass_weight:
        pool = lambda x: tf.nn.avg_pool2d(x, LOW_PASS, LOW_PASS, "VALID")  # noqa: E731
        loss += low_pass_weight * tf.reduce_mean(tf.square(pool(images) - pool(target)))
    return loss


class Inverter:
    """Inversion for one model folder, with its own SavedModel instance (see the module docstring)."""

    def __init__(self, model_dir, settings: Settings = Settings()):
        import tensorflow as tf

        manifest = model_folder.read_manifest(model_dir)
        if not model_folder.has_pixels(manifest):
            raise ValueError(f"{model_dir}: the model has no {model_folder.PIXELS_SIGNATURE} signature to optimise "
                             "through (upgrade it: python -m training export --upgrade MODEL_DIR)")
        self.settings = settings
        self.latent_size = int(manifest["latent_size"])
        self.num_attributes = len(manifest["attributes"])
        self.size = int(manifest["resolution"])
        self._loaded = model_folder.load_saved_model(model_dir)  # this Inverter's own: its weights get tuned
        self._pixels = model_folder.pixels_function(self._loaded)
        function = getattr(self._loaded, model_folder.PIXELS_SIGNATURE).get_concrete_function()
        self._weights = [v for v in function.trainable_variables]
        self._exported = [v.numpy() for v in self._weights]
        self._lock = threading.Lock()
        self._noise = tf.Variable(tf.zeros([1, self.latent_size]), trainable=False)
        self._logits = tf.Variable(tf.zeros([1, self.num_attributes]), trainable=False)
        self._moments = [tf.Variable(tf.zeros_like(v), trainable=False) for v in
                         [self._noise, self._logits] * 2 + self._weights * 2]
        self._fit = tf.function(self._fit_graph, input_signature=[
            tf.TensorSpec([1, self.size, self.size, 3], tf.float32), tf.TensorSpec([1, self.latent_size]),
            tf.TensorSpec([1, self.num_attributes]), tf.TensorSpec([None, self.num_attributes])])

    def _adam(self, variables, gradients, moments, step, rate):
        """One Adam step (bias-corrected) on ``variables``; ``moments``: their first moments then second ones."""
        import tensorflow as tf

        count = len(variables)
        step = tf.cast(step + 1, tf.float32)
        for variable, gradient, first, second in zip(variables, gradients, moments[:count], moments[count:]):
            first.assign(BETA1 * first + (1 - BETA1) * gradient)
            second.assign(BETA2 * second + (1 - BETA2) * tf.square(gradient))
            corrected = rate * tf.sqrt(1 - BETA2 ** step) / (1 - BETA1 ** step)
            variable.assign_sub(corrected * first / (tf.sqrt(second) + EPSILON))

    def _fit_graph(self, target, noise, logits, edits):
        """Both stages, then the rebuild and the edits (``edits``: [E, A], KEEP where the refined attribute value
        is kept, else the value to set) as float32 pixels [1 + E, S, S, 3]."""
        import tensorflow as tf

        s = self.settings
        self._noise.assign(noise)
        self._logits.assign(logits)
        for moment in self._moments:
            moment.assign(tf.zeros_like(moment))
        latent = [self._noise, self._logits]
        for step in tf.range(s.latent_steps):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(latent)
                loss = pixel_loss(self._pixels(self._noise, tf.sigmoid(self._logits)), target, s.low_pass_weight)
            self._adam(latent, tape.gradient(loss, latent), self._moments[:4], step, s.latent_rate)
        attributes = tf.sigmoid(self._logits)
        weight_moments = self._moments[4:]
        for step in tf.range(s.tune_steps):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(self._weights)
                loss = pixel_loss(self._pixels(self._noise, attributes), target, s.low_pass_weight)
            self._adam(self._weights, tape.gradient(loss, self._weights), weight_moments, step, s.tune_rate)
        count = tf.shape(edits)[0]
        vectors = tf.concat([attributes, tf.where(tf.math.is_nan(edits), tf.repeat(attributes, count, axis=0), edits)],
                            axis=0)
        return self._pixels(tf.repeat(self._noise, count + 1, axis=0), vectors), self._noise, attributes

    def invert(self, framed: np.ndarray, noise: np.ndarray, found: np.ndarray, edits=(),
               wait_s: float | None = None) -> Inverted:
        """``framed``: uint8 [S, S, 3], the photo as the encoder saw it; ``noise`` [L] and ``found`` [A] (0/1): the
        encoder's; ``edits``: attribute vectors [A] whose entries are the values to set, or KEEP for the refined
        value (edit_vectors makes them). ``wait_s``: how long to wait for another photo's inversion to finish
        (TimeoutError past it); None waits as long as it takes."""
        import tensorflow as tf

        target = tf.constant(model_folder.from_uint8(np.asarray(framed, np.uint8))[None])
        logits = np.where(attributes.is_on(found), FOUND_LOGIT, -FOUND_LOGIT).astype(np.float32)[None]
        edits = np.asarray(edits, np.float32).reshape(-1, self.num_attributes)
        if not self._lock.acquire(timeout=-1 if wait_s is None else max(0.0, wait_s)):
            raise TimeoutError(f"another photo's inversion held this model's tuning copy for {wait_s:g} s")
        try:
            pixels, refined, refined_attributes = self._fit(
                target, tf.constant(np.asarray(noise, np.float32)[None]), tf.constant(logits), tf.constant(edits))
            faces = model_folder.to_uint8(pixels.numpy())
        finally:
            for variable, value in zip(self._weights, self._exported):  # the next photo tunes the exported G
                variable.assign(value)
            self._lock.release()
        return Inverted(faces[0], list(faces[1:]), refined.numpy()[0], refined_attributes.numpy()[0])


def edit_vectors(found: np.ndarray, edited: np.ndarray, gains=1.0) -> np.ndarray:
    """The edits :meth:`Inverter.invert` takes for one edited 0/1 vector: where ``edited`` differs from ``found``
    its value is set, pushed by ``gains`` (facegen.photo_edit.pushed: the model's inversion_edit_gains, off -> g,
    on -> 1 - g), elsewhere the refined value is kept (KEEP). -> float32 [1, A]."""
    found, edited = np.asarray(found, np.float32), np.asarray(edited, np.float32)
    return np.where(edited != found, photo_edit.pushed(found, edited, gains), KEEP).astype(np.float32)[None]
