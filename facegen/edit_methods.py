"""How an edited face is made from a photo, method by method: the one home of the rules /api/edit (app/edits.py)
serves and training/identity.py measures, so that the figures describe what is served.

Every method starts from the framed photo and the encoder's outputs (noise, attribute probabilities), turned into
the generator's inputs here (:func:`encoder_inputs`): the noise rounded, the attributes as found. Then:

- ``generator``: G(noise, edited), the encoder's rebuild with the edit (another person more often than not);
- ``photo``: that edit's change applied to the framed photo (facegen/photo_edit.py), so the rest stays the photo's;
- ``latent`` / ``pti``: the face from a per-photo inversion (facegen/inversion.py): the noise and attributes
  optimised (latent), then a copy of G tuned on the photo (pti);
- ``pti-photo``: the tuned copy's change applied to the framed photo.

``latent`` is pti's first stage, measured but not served: it does not keep the person (docs/SERVICE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegen import attributes, photo_edit

# The encoder's latent is rounded to this many decimals before it reaches the generator: a photo encoded in a batch
# of another size may differ in the last float bits (as a face generated in a grid may), and rounding keeps those
# bits from ever reaching the pixels. 1e-4 is far below what moves a generated pixel by one level.
NOISE_DECIMALS = 4


@dataclass(frozen=True)
class Method:
    name: str
    inversion: str | None  # the facegen.inversion recipe it needs ("latent" or "pti"), None: the encoder's guess
    onto_photo: bool  # the generator's change is applied to the framed photo, instead of showing its face
    served: bool  # offered by /api/edit?method=
    summary: str  # a few words, for the API's documentation and the model card's tables


METHODS = {m.name: m for m in (
    Method("photo", None, True, True, "the generator's change applied to the framed photo"),
    Method("generator", None, False, True, "the generator's face from the encoder's guess"),
    Method("latent", "latent", False, False, "the generator's face from a guess optimised on the photo"),
    Method("pti", "pti", False, True, "the face of a generator copy tuned to the photo"),
    Method("pti-photo", "pti", True, True, "the tuned copy's change applied to the framed photo"))}
SERVED = tuple(name for name, m in METHODS.items() if m.served)
INVERTED = tuple(name for name in SERVED if METHODS[name].inversion)  # need the model's float signature
# The default, chosen by the identity and edit figures in docs/SERVICE.md (200 test photos, celeba-hq-64): pti-photo
# where the model can invert (its rebuild is the person, 0.995 against the encoder's 0.040, and with its own edit gains
# its edits read as asked as often as photo's while staying the person more often), else photo (which needs only the
# encoder and costs about a quarter of the CPU: bench/edit_time.py).
DEFAULT = "pti-photo"
FALLBACK = "photo"


def with_inversion(inverted: bool) -> list:
    """The served methods that need a per-photo inversion (or those that do not): the ones each kind of edit gain
    (facegen.model_folder.EDIT_GAIN_KEYS) applies to."""
    return [name for name in SERVED if bool(METHODS[name].inversion) == inverted]


def served(can_encode: bool, has_pixels: bool) -> list:
    """The methods a model offers, in SERVED's order: none where it cannot encode photos, the inverted ones only
    with its float signature (facegen.model_folder.has_pixels)."""
    return [name for name in SERVED if can_encode and (has_pixels or name not in INVERTED)]


def default(has_pixels: bool) -> str:
    """The method an edit uses when none is asked: DEFAULT where the model can invert, else FALLBACK."""
    return DEFAULT if has_pixels else FALLBACK


def encoder_inputs(noise, probabilities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The encoder's outputs for one photo -> (noise rounded to NOISE_DECIMALS, probabilities clipped to 0..1, the
    attributes as found: float32 0/1, on where the probability is at least facegen.attributes.ON_THRESHOLD).
    Any leading shape: one photo's outputs, or a batch's."""
    noise = np.round(np.asarray(noise, np.float64), NOISE_DECIMALS).astype(np.float32)
    probabilities = np.clip(np.asarray(probabilities, np.float32), 0.0, 1.0)
    return noise, probabilities, attributes.is_on(probabilities).astype(np.float32)


def edited_face(method: str, framed: np.ndarray, generated: np.ndarray, rebuilt: np.ndarray | None) -> np.ndarray:
    """The face ``method`` answers with, uint8 [S, S, 3], from the framed photo and the generator's (or the tuned
    copy's) edited and rebuilt faces (``rebuilt`` is needed only where the method edits the photo)."""
    if METHODS[method].onto_photo:
        return photo_edit.photo_edit(framed, generated, rebuilt)
    return np.asarray(generated)


def unedited(method: str) -> str:
    """What ``method``'s edit is compared with to see which other attributes it kept: the framed photo where it
    edits the photo, else its own rebuild ("encoder" or the inversion's name)."""
    m = METHODS[method]
    return "framed" if m.onto_photo else m.inversion or "encoder"
