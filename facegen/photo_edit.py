"""An attribute edit applied as a change to the photo (/api/edit's method=photo; measured by training/identity.py).

The encoder's rebuild of a photo, G(z, found), is usually another person: the inversion loses identity. The edit,
though, is mostly a local change: G(z, edited) - G(z, found) is large where the attribute lives (the mouth for
Smiling, the eyes for Eyeglasses) and small elsewhere. So the edited face is the framed photo itself plus that
change, masked to where it is large: the person stays the person everywhere the edit does not touch. Serving and
training's evaluation both import this module (app/ never imports training/), so the figures describe what is served.
"""

from __future__ import annotations

import math

import numpy as np

# The change mask, in fractions of the framed side (so the same at 64 and 128 px) and pixel levels: the generator's
# two faces are compared after a blur of CHANGE_BLUR (their pixel noise is not an edit), the mask rises from 0 at
# CHANGE_LOW levels of mean absolute difference to 1 at CHANGE_HIGH, and is blurred again by CHANGE_FEATHER so that
# its edge is soft. The change is added STRENGTH times over.
#
# Chosen on 40 held-out CelebA-HQ photos with celeba-hq-64 (training/identity.py's figures; Male / Smiling /
# Eyeglasses edits): a wider mask or a stronger change reads as the new attribute more often and as the same person
# less often. LOW/HIGH 4/16: changed 0.35 / 0.35 / 0.90, same person 1.00 / 1.00 / 0.95; 2/8: changed 0.48 / 0.50 /
# 0.90, same person 1.00 / 0.98 / 0.88 (kept 0.89 / 0.93 / 0.80); 2/8 at strength 1.6: changed 0.78 / 0.75 / 0.95 but
# same person 0.93 / 0.93 / 0.75 and kept 0.83 / 0.88 / 0.74. 2/8 at strength 1 is the widest setting that keeps
# Smiling and Eyeglasses edits the same person at least 85% of the time (the goal).
CHANGE_BLUR = 1 / 48
CHANGE_LOW, CHANGE_HIGH = 2.0, 8.0
CHANGE_FEATHER = 1 / 32
STRENGTH = 1.0


def pushed(found: np.ndarray, edited: np.ndarray, gains) -> np.ndarray:
    """The generator's input for an edit (methods generator and photo): float32 [A], ``found`` + ``gains`` x
    (``edited`` - ``found``), so each attribute the edit changes goes ``gains`` times as far (off -> g, on -> 1 - g),
    past the 0/1 the generator was trained on: at 0/1 its change is often too faint to read as the new attribute.
    ``gains``: float [A] or one number, the model's own (facegen.model_folder.edit_gains: measured per model by
    ``python -m training.identity --write``); attributes the edit leaves are as found. The pti methods' tuned copy
    has gains of its own (the manifest's inversion_edit_gains; facegen.inversion.edit_vectors): on 60 validation
    photos the encoder's gains (Male 1.75, Smiling 2) made its edits overshoot (pti-photo: changed 0.83 / 0.97, the
    same person only 0.63 / 0.72)."""
    found, edited = np.asarray(found, np.float32), np.asarray(edited, np.float32)
    return (found + np.asarray(gains, np.float32) * (edited - found)).astype(np.float32)


def blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of a float [S, S] array along both axes (edges reflected); ``sigma`` in pixels."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-6)) ** 2)
    taps /= taps.sum()
    padded = np.pad(values, radius, mode="symmetric")
    rows = np.apply_along_axis(np.convolve, 1, padded, taps, mode="valid")
    return np.apply_along_axis(np.convolve, 0, rows, taps, mode="valid")


def change_mask(generated: np.ndarray, rebuilt: np.ndarray) -> np.ndarray:
    """float32 [S, S] in 0..1: where the generator's edited face (uint8 [S, S, 3]) differs from its rebuilt one."""
    side = generated.shape[0]
    difference = np.abs(generated.astype(np.float64) - rebuilt.astype(np.float64)).mean(axis=2)
    difference = blur(difference, CHANGE_BLUR * side)
    mask = np.clip((difference - CHANGE_LOW) / (CHANGE_HIGH - CHANGE_LOW), 0.0, 1.0)
    return np.clip(blur(mask, CHANGE_FEATHER * side), 0.0, 1.0).astype(np.float32)


def photo_edit(framed: np.ndarray, generated: np.ndarray, rebuilt: np.ndarray) -> np.ndarray:
    """The framed photo plus the generator's change, where it changes things: uint8 [S, S, 3] (all three inputs
    uint8 [S, S, 3]: the photo as framed, G(z, edited), G(z, found))."""
    change = STRENGTH * change_mask(generated, rebuilt)[..., None] * (generated.astype(np.float32)
                                                                      - rebuilt.astype(np.float32))
    return np.clip(np.round(framed.astype(np.float32) + change), 0, 255).astype(np.uint8)
