"""Uploaded portraits into the model's space and back out: /api/encode and /api/edit.

    bytes (app/uploads.py: read in memory, decoded upright to RGB, limits checked)
      -> the largest face and its five landmarks (facegen.framing, MTCNN)
      -> framed: warped onto the manifest's landmark template at the encoder's input size
      -> encoder (app/batcher.py's EncodeBatcher: concurrent uploads share a call) -> noise, attribute probabilities
      -> found vector: each attribute on where its probability is at least THRESHOLD (0.5)
      -> edited vector: the query's constraints (``Smiling`` on, ``-Eyeglasses`` off) over the found vector
      -> generator (the model's MicroBatcher, raw pixels): rebuilt = G(noise, found), generated = G(noise, edited)
      -> edited face, by ``method`` (facegen/edit_methods.py; default_method: pti-photo where the model can invert,
         else photo): ``photo`` (facegen/photo_edit.py) applies the edit as a change to the framed photo,
         framed + mask * (generated - rebuilt), the mask being where the generator's two faces differ, so the rest
         of the face stays the person's own; ``generator`` is the generated face itself (the
         encoder's rebuild, edited: another person more often than not, see docs/SERVICE.md's identity figures);
         ``pti`` / ``pti-photo`` first refine the encoder's guess on the photo (facegen/inversion.py: the noise
         and attributes optimised, then pivotal tuning of a copy of G) and then take that copy's rebuild and edit
         (pti) or apply its change to the framed photo (pti-photo); the model needs its float signature
      -> the whole photo (view=photo): the change (edited - framed, feathered at the framed square's edge) warped
         back through the inverse of the framing similarity and added to the upright photo, downscaled first to
         at most PHOTO_MAX_SIDE (facegen.framing.unframe_change)

Nothing here keeps a photo: no file, no cache entry, no log line. The same photo and query give the same bytes (the
detector, the warp, the encoder and the generator are deterministic on one machine, and the encoder's outputs are
rounded (facegen.edit_methods.NOISE_DECIMALS) so that the batch a photo happens to share cannot move a pixel).
"""

from __future__ import annotations

import base64
import math
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from app.batcher import Overloaded
from app.errors import ApiError
from app.faces import FaceInputs, encode_png, to_image
from app.models import Model
from facegen import attributes, edit_methods, framing, inversion, model_folder, photo_edit, provenance

THRESHOLD = attributes.ON_THRESHOLD  # an attribute the encoder gives at least this probability is "on" as found
PROBABILITY_DECIMALS = 3  # probabilities as reported (header and JSON)
VIEWS = ("edited", "rebuilt", "framed", "strip", "photo")  # /api/edit?view=; strip = framed | rebuilt | edited
STRIP = ("framed", "rebuilt", "edited")
JSON_VIEWS = STRIP + ("photo",)  # format=json's images
# /api/edit?method=, how the edited face is made: facegen/edit_methods.py (the pti ones need the float signature)
METHODS = edit_methods.SERVED
INVERTED_METHODS = edit_methods.INVERTED
FALLBACK_METHOD = edit_methods.FALLBACK
# The whole-photo view is returned at the upright photo's own size, downscaled (Lanczos) so that its longer side is
# at most this: a 12 MP phone photo would be a 20 MB PNG, and the edited face is 64-128 px of detail anyway.
PHOTO_MAX_SIDE = 1024
# The whole-photo view fades the change out over this fraction of the framed side at the framed square's edge, so no
# seam shows where the square ends in the photo.
FRAME_FEATHER = 1 / 8


# Longest an edit (or an encode) may take once admitted (app/admission.py's upload gate): past it the request is
# answered 503 with Retry-After instead of holding its thread and upload slot on. An edit takes 0.1-0.5 s on two
# cores (bench/edit_time.py): a request still running after 20 s is stuck behind an overload, and a retry (perhaps
# on another worker) serves the user sooner.
DEFAULT_DEADLINE_S = 20.0
DEADLINE_ENV = "FACEGEN_EDIT_DEADLINE_S"


class DeadlinePassed(Overloaded):
    """503 with Retry-After: the edit ran past its deadline (DEADLINE_ENV)."""


class Deadline:
    """The time an upload's request has left: started when the route starts (after admission), checked between the
    stages (detection, encoder, generator, the whole photo) and handed to the batchers as their wait."""

    def __init__(self, seconds: float | None = None):
        if seconds is None:
            raw = os.environ.get(DEADLINE_ENV, "").strip()
            try:
                seconds = float(raw) if raw else DEFAULT_DEADLINE_S
            except ValueError:
                seconds = DEFAULT_DEADLINE_S
            if not seconds > 0:
                seconds = DEFAULT_DEADLINE_S
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def remaining(self, stage: str) -> float:
        """Seconds left before ``stage`` starts; DeadlinePassed (503) when none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlinePassed(f"the edit ran past its deadline of {self.seconds:g} s ({DEADLINE_ENV}) before "
                                 f"{stage}: the server is busy, try again shortly")
        return left

    def wait_s(self, stage: str, batcher) -> float:
        """How long to wait for ``batcher`` in ``stage``: what is left, or the batcher's own timeout if shorter."""
        return min(self.remaining(stage), getattr(batcher, "timeout_s", None) or math.inf)


_inverters: dict = {}  # Model -> facegen.inversion.Inverter, made on a model's first inverted edit (or warm-up)
_inverters_lock = threading.Lock()


def inverter_for(model: Model) -> inversion.Inverter:
    """The model's Inverter: its own SavedModel instance whose weights pivotal tuning changes (and resets), never the
    one /api/face generates with. Loaded and traced on first use (seconds): one per model, per worker."""
    with _inverters_lock:
        if model not in _inverters:
            if not model_folder.has_pixels(model.manifest):
                raise ApiError(f"method={'/'.join(INVERTED_METHODS)} needs the model's {model_folder.PIXELS_SIGNATURE} "
                               f"signature, which {model.name} was exported without: use method={FALLBACK_METHOD}",
                               allowed=[m for m in METHODS if m not in INVERTED_METHODS])
            _inverters[model] = inversion.Inverter(model.path)
        return _inverters[model]


def can_invert(model: Model) -> bool:
    """Whether the pti methods work on this model: it encodes photos and has the float signature."""
    return model.can_encode and model_folder.has_pixels(model.manifest)


def default_method(model: Model) -> str:
    """/api/edit's method when the query names none (facegen.edit_methods.default)."""
    return edit_methods.default(can_invert(model))


def served_methods(model: Model) -> list:
    """The methods /api/edit offers for this model, in METHODS' order (none where it cannot encode photos)."""
    return edit_methods.served(model.can_encode, can_invert(model))


def warm_up_inverters(models) -> float:
    """Make the Inverter of each model that can invert and run it once on a grey photo with one edit (the traced
    graph takes any number of edits: no later retrace); returns the seconds it took. Holds each Inverter's lock while
    it runs, so an edit arriving meanwhile waits for the warm graph instead of tracing its own."""
    started = time.perf_counter()
    for model in models:
        if can_invert(model):
            inverter = inverter_for(model)
            side = model.resolution
            found = np.zeros(len(model.attributes), np.float32)
            inverter.invert(np.full((side, side, 3), 128, np.uint8), np.zeros(model.latent_size, np.float32), found,
                            edits=inversion.edit_vectors(found, found))
    return time.perf_counter() - started


class NoFace(ApiError):
    """422: the photo decoded, but holds no face to encode."""

    def __init__(self, message: str):
        super().__init__(message, status=422)


@dataclass(frozen=True, eq=False)
class PhotoFace:
    """A face made from an encoded photo, for the model's MicroBatcher (which needs ``model`` and ``resolved()``).
    Never a cache key: it has no seed, and edits are not kept."""

    model: Model
    inputs: FaceInputs

    def resolved(self) -> FaceInputs:
        return self.inputs


@dataclass(frozen=True, eq=False)
class EncodedPhoto:
    """One uploaded photo, found, framed and encoded."""

    model: Model
    width: int  # the upright photo's size
    height: int
    pixels: np.ndarray = field(repr=False)  # uint8 [height, width, 3], the upright photo (this request's; not kept)
    face: framing.Face  # the face used: the largest
    faces_found: int
    framed: np.ndarray  # uint8 [S, S, 3], what the encoder saw
    noise: np.ndarray  # float32 [latent_size], rounded (facegen.edit_methods.encoder_inputs)
    probabilities: np.ndarray  # float32 [A], the encoder's attribute probabilities
    found: np.ndarray  # float32 0/1 [A], on where the probability is at least THRESHOLD

    def rounded(self) -> list[float]:
        return [round(float(p), PROBABILITY_DECIMALS) for p in self.probabilities]


def warm_up_detector() -> float:
    """Build the face detector and run each of its three networks once; returns the seconds it took.

    Done at startup when a model can encode, so the first upload does not pay for it and /readyz (which answers only
    once create_app() has returned) means the detector is ready too. Its weights ship in the mtcnn wheel: nothing is
    downloaded.
    """
    started = time.perf_counter()
    detector = framing.detector()
    framing.detect_faces(np.full((64, 64, 3), 128, np.uint8))  # a blank image: the first network only
    for stage, side in zip(getattr(detector, "stages", ()), (None, 24, 48)):  # the other two on blank crops
        if side is not None and getattr(stage, "model", None) is not None:
            stage.model(np.zeros((1, side, side, 3), np.float32))
    return time.perf_counter() - started


def find_and_frame(pixels: np.ndarray, model: Model) -> tuple[framing.Face, int, np.ndarray]:
    """uint8 RGB [H, W, 3] -> (the largest face, how many faces were found, the face framed for the encoder)."""
    faces = framing.detect_faces(pixels)
    if not faces:
        smallest = math.ceil(framing.MIN_FACE_SIZE * max(1.0, max(pixels.shape[:2]) / framing.DETECT_MAX_SIDE))
        raise NoFace(f"no face found in the photo (the detector's confidence must reach {framing.MIN_SCORE}); send "
                     f"a photo where a face is clearly visible, upright and at least {smallest} px across")
    face = faces[0]  # the largest (detect_faces sorts by box area)
    try:
        framed = framing.frame_face(pixels, face.landmarks, model.encoder.template, model.encoder.size)
    except ValueError:
        raise NoFace("the face found cannot be framed (its landmarks are degenerate); send a clearer photo") from None
    return face, len(faces), framed


def encode_photo(pixels: np.ndarray, model: Model, encoder, deadline: Deadline | None = None) -> EncodedPhoto:
    """Decoded upload -> EncodedPhoto; ``encoder`` is the model's EncodeBatcher (or anything with ``result``)."""
    deadline = deadline or Deadline()
    deadline.remaining("face detection")
    face, count, framed = find_and_frame(pixels, model)
    noise, probabilities = encoder.result(framed, timeout_s=deadline.wait_s("encoding", encoder))
    return EncodedPhoto(model, int(pixels.shape[1]), int(pixels.shape[0]), pixels, face, count, framed,
                        *edit_methods.encoder_inputs(noise, probabilities))


def edited_vector(photo: EncodedPhoto, constraints: tuple[str, ...] | None) -> np.ndarray:
    """The found vector with the constraints over it: named attributes on, ``-named`` off, the rest as found."""
    fixed, values = attributes.constraint_arrays(constraints, photo.model.attributes)
    return np.where(fixed, values, photo.found).astype(np.float32)


def whole_photo(photo: EncodedPhoto, edited_face: np.ndarray) -> np.ndarray:
    """The upright photo (longer side at most PHOTO_MAX_SIDE) with the edit put back: the change from the framed
    face to ``edited_face`` (both at the model's resolution), feathered at the square's edge, warped back through
    the inverse of the framing similarity and added (facegen.framing.unframe_change). uint8 [H, W, 3]."""
    pixels, landmarks = photo.pixels, photo.face.landmarks
    height, width = pixels.shape[:2]
    if max(height, width) > PHOTO_MAX_SIDE:
        scale = PHOTO_MAX_SIDE / max(height, width)
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = np.asarray(Image.fromarray(pixels).resize(new_size, Image.Resampling.LANCZOS))
        landmarks = landmarks * np.array([new_size[0] / width, new_size[1] / height])
    side = edited_face.shape[0]
    feather = framing.border_feather(side, FRAME_FEATHER * side)[..., None]
    change = (edited_face.astype(np.float32) - photo.framed.astype(np.float32)) * feather
    return framing.unframe_change(pixels, change, landmarks, photo.model.encoder.template)


def render_views(photo: EncodedPhoto, edited: np.ndarray, views, size: int, batcher,
                 method: str, deadline: Deadline | None = None) -> dict[str, np.ndarray]:
    """The requested views as uint8 RGB: ``framed`` (the encoder's input), ``rebuilt`` (G(noise, found), or the
    inversion's rebuild for the pti methods) and ``edited`` (by ``method``, see the module docstring) at
    [size, size, 3], and ``photo`` (the whole upright photo with the edit, see :func:`whole_photo`) at the photo's
    own size. The encoder's faces go through ``batcher`` (the model's MicroBatcher) as raw pixels, submitted
    together so they share a call; equal vectors are generated once."""
    wanted = set(views)
    needs_edit = bool(wanted & {"edited", "photo"})
    deadline = deadline or Deadline()
    if edit_methods.METHODS[method].inversion:
        faces = inverted_faces(photo, edited, needs_edit, deadline)
    else:
        faces = generated_faces(photo, edited, wanted, needs_edit, method, batcher, deadline)
    shown = {"framed": photo.framed} if "framed" in wanted else {}
    if "rebuilt" in wanted:
        shown["rebuilt"] = faces["rebuilt"]
    if needs_edit:
        edited_face = edit_methods.edited_face(method, photo.framed, faces["generated"], faces.get("rebuilt"))
        if "edited" in wanted:
            shown["edited"] = edited_face
    views = {name: np.asarray(to_image(pixels, size)) for name, pixels in shown.items()}
    if "photo" in wanted:
        deadline.remaining("the whole photo")
        views["photo"] = whole_photo(photo, edited_face)
    return views


def generated_faces(photo: EncodedPhoto, edited: np.ndarray, wanted: set, needs_edit: bool, method: str, batcher,
                    deadline: Deadline) -> dict[str, np.ndarray]:
    """{"rebuilt": G(noise, found), "generated": G(noise, edited)} (those needed) through the model's MicroBatcher."""
    vectors = {}
    if "rebuilt" in wanted or (needs_edit and edit_methods.METHODS[method].onto_photo):
        vectors["rebuilt"] = photo.found
    if needs_edit:
        vectors["generated"] = photo_edit.pushed(photo.found, edited, photo.model.edit_gains)
    futures = {}
    for name, vector in vectors.items():
        same = next((other for other, f in futures.items() if np.array_equal(vectors[other], vector)), None)
        futures[name] = futures[same] if same else batcher.submit(
            PhotoFace(photo.model, FaceInputs(photo.noise, vector, None)), finish=None)
    return {name: np.asarray(batcher.wait(future, deadline.wait_s("generating", batcher))) for name, future in
            futures.items()}


def inverted_faces(photo: EncodedPhoto, edited: np.ndarray, needs_edit: bool,
                   deadline: Deadline) -> dict[str, np.ndarray]:
    """{"rebuilt", "generated"}: the per-photo inversion's rebuild and edit (facegen/inversion.py), waiting for the
    model's tuning copy no longer than the deadline allows."""
    inverter = inverter_for(photo.model)
    edits = inversion.edit_vectors(photo.found, edited, photo.model.inversion_edit_gains) if needs_edit else ()
    try:
        result = inverter.invert(photo.framed, photo.noise, photo.found, edits,
                                 wait_s=deadline.remaining("the inversion"))
    except TimeoutError:
        deadline.remaining("the inversion")  # 503 DeadlinePassed when the wait used the time up
        raise DeadlinePassed(f"the edit could not start its inversion within its deadline of {deadline.seconds:g} s "
                             f"({DEADLINE_ENV}): the server is busy, try again shortly") from None
    faces = {"rebuilt": result.rebuilt}
    if needs_edit:
        faces["generated"] = result.edits[0]
    return faces


def strip_png(views: dict[str, np.ndarray], model: Model) -> bytes:
    """framed | rebuilt | edited side by side, no gaps: one PNG three faces wide."""
    return view_png(np.concatenate([views[name] for name in STRIP], axis=1), model)


def view_png(pixels: np.ndarray, model: Model) -> bytes:
    """Every view is marked as made from a photo with a trained model (facegen/provenance.py), the framed one too:
    it is the service's output, warped by a trained detector's landmarks."""
    return encode_png(Image.fromarray(np.ascontiguousarray(pixels), "RGB"),
                      provenance.from_photo(model.name, model.version, "edit"))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encoded_header(photo: EncodedPhoto) -> str:
    """X-Encoded-Attributes: ``Male=0.931,Eyeglasses=0.020,...``, every attribute in manifest order."""
    return ",".join(f"{name}={p:.{PROBABILITY_DECIMALS}f}" for name, p in zip(photo.model.attributes,
                                                                            photo.probabilities))


def face_listing(photo: EncodedPhoto) -> dict:
    """Where the face was found, in the upright photo's pixel coordinates (top-left corner 0, 0)."""
    face = photo.face
    return {"box": [round(v, 1) for v in face.box],
            "landmarks": {name: [round(float(x), 1), round(float(y), 1)]
                          for name, (x, y) in zip(framing.LANDMARKS, face.landmarks)},
            "score": round(face.score, 4)}


def encode_listing(photo: EncodedPhoto) -> dict:
    """/api/encode's answer (and the first part of /api/edit?format=json's)."""
    model = photo.model
    return {"model": model.name, "version": model.version,
            "attributes": dict(zip(model.attributes, photo.rounded())),
            "found": attributes.explicit(photo.found, model.attributes),
            "threshold": THRESHOLD,
            "face": face_listing(photo), "faces_found": photo.faces_found,
            "image": {"width": photo.width, "height": photo.height},
            "framing": {"size": model.encoder.size}}
