"""Face framing: find a face's five landmarks and warp the photo so the face sits where the training faces sit.

The training images (CelebA-HQ) are aligned face photos: the eyes, nose and mouth of every face land in nearly the
same place. An uploaded portrait is framed the same way before it is encoded: detect the face and its five landmarks
(:func:`detect_faces`), fit the similarity (rotation, uniform scale, translation) that carries those landmarks onto a
template (:func:`similarity_transform`), and warp the photo with it (:func:`frame_face`). The template is the mean
landmark position over training images (:func:`mean_landmarks`), measured once at export and kept in the manifest.

Conventions, used by every function here:

- Points are ``(x, y)`` in continuous pixel coordinates, as Pillow uses them: the image's top-left corner is (0, 0)
  and pixel ``[row, col]`` covers ``col <= x < col + 1``, ``row <= y < row + 1`` (its centre is ``col + 0.5``).
- The five landmarks are, in this order, :data:`LANDMARKS`: the eye on the image's left (the person's right eye),
  the eye on the image's right, the nose tip, the mouth corner on the image's left, the one on the image's right.
- A template holds the same five points as fractions of the output side: ``template * size`` are pixel positions in
  a ``size`` x ``size`` output, for any ``size``.

The detector is MTCNN from the ``mtcnn`` package (MIT licence), whose three small networks ship inside its wheel;
nothing is downloaded at run time. It runs on TensorFlow, imported only when the first face is detected, and is
built once per process (:func:`detector`); detections are serialised by a lock, so threads of one worker share it.
"""

from __future__ import annotations

import importlib.resources
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# Detection runs on a copy no longer than this on its longer side: MTCNN's cost grows with the pixel count, and a
# face too small to find at this size (under 20 px of 640, about 3 % of the photo's side) is too small to encode.
DETECT_MAX_SIDE = 640
# Faces below this detector confidence are dropped: MTCNN's own last-stage threshold, so by default every face it
# reports. Real faces go that low (on 1,000 CelebA-HQ photos the lowest scored 0.86 and 1.3 % scored under 0.9),
# while flat, noise and smooth random images give no detection at all; callers may ask for more.
MIN_SCORE = 0.8
# The smallest face MTCNN looks for, in pixels of the image it runs on (its own default).
MIN_FACE_SIZE = 20


class NoFaceFound(ValueError):
    """The image holds no face the detector is confident about."""


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` is (x0, y0, x1, y1), ``landmarks`` a [5, 2] float array in :data:`LANDMARKS`
    order, both in the image's continuous pixel coordinates; ``score`` is the detector's confidence in 0..1."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class MeanLandmarks(NamedTuple):
    """What :func:`mean_landmarks` measured: the template ([5, 2], fractions of the side), how many images gave a
    face, how many did not (skipped), and the per-coordinate standard deviation of the faces that did."""

    template: np.ndarray
    used: int
    skipped: int
    spread: np.ndarray


# --- the detector: built on first use, once per process ---------------------------------------------------------------

_detector = None
_detector_lock = threading.Lock()  # guards building the detector
_detect_lock = threading.Lock()  # one detection at a time: TensorFlow already spreads one over every core


def _skipping_when_empty(stage_class):
    """A later MTCNN stage that passes no candidates on when it gets none. mtcnn runs each stage's network even on an
    empty batch, which TensorFlow refuses with an INVALID_ARGUMENT that mtcnn catches as "no face", but only after
    TensorFlow's runtime has logged it as a warning: one misleading log line for every upload without a face."""

    class Skipping(stage_class):
        def __call__(self, images_normalized, bboxes_batch, **kwargs):
            if len(bboxes_batch) == 0:
                return np.empty((0, 16))  # the rows detect_faces reads: index, box, score, 5 landmarks
            return super().__call__(images_normalized=images_normalized, bboxes_batch=bboxes_batch, **kwargs)

    return Skipping


def detector():
    """The process's MTCNN, built on first call (a second or so: TensorFlow import aside, three small networks).

    Weights are loaded by absolute path from the installed package: given a bare name, ``mtcnn`` would first try
    that name relative to the working directory, and its weight files are pickles.
    """
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                from mtcnn import MTCNN
                from mtcnn.stages import StageONet, StagePNet, StageRNet

                weights = importlib.resources.files("mtcnn.assets.weights")
                stages = [StagePNet(weights=str(weights / "pnet.lz4")),
                          _skipping_when_empty(StageRNet)(weights=str(weights / "rnet.lz4")),
                          _skipping_when_empty(StageONet)(weights=str(weights / "onet.lz4"))]
                _detector = MTCNN(stages=stages, device="CPU:0")
    return _detector


def _check_rgb(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB array [H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"empty image {list(rgb.shape)}")
    return rgb


def detect_faces(rgb, min_score: float = MIN_SCORE, max_side: int = DETECT_MAX_SIDE) -> list[Face]:
    """Every face in a uint8 RGB image [H, W, 3], the largest first (by box area; equal areas: higher score first).

    Several faces in a portrait are usually the subject and someone behind: callers that want one face take the
    first, the largest (:func:`largest_face`). An image without a face gives an empty list. ``min_score`` drops
    less confident faces; ``max_side`` bounds the copy the detector runs on (coordinates are the image's own).
    About 90 ms for a 128 px photo and 250 ms for a 12 MP one on two CPU cores.
    """
    rgb = _check_rgb(rgb)
    height, width = rgb.shape[:2]
    scale = max(1.0, max(height, width) / max_side)
    if scale > 1.0:
        small = (max(1, round(width / scale)), max(1, round(height / scale)))
        image = np.asarray(Image.fromarray(rgb).resize(small, Image.Resampling.BILINEAR, reducing_gap=2.0))
    else:
        image = rgb
    if min(image.shape[:2]) < 12:  # MTCNN's smallest window: no face fits
        return []
    with _detect_lock:
        rows = detector().detect_faces(image, box_format="xyxy", output_type="numpy", min_face_size=MIN_FACE_SIZE)
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
    # Rows: image index, x0, y0, x1, y1, score, then the five x and the five y of the landmarks. MTCNN counts
    # pixels from their centres (pixel 0 is at 0), so +0.5 moves to continuous coordinates before rescaling.
    sx, sy = width / image.shape[1], height / image.shape[0]
    faces = []
    for row in rows:
        score = float(row[5])
        if not score >= min_score:
            continue
        box = ((row[1] + 0.5) * sx, (row[2] + 0.5) * sy, (row[3] + 0.5) * sx, (row[4] + 0.5) * sy)
        landmarks = np.stack([(row[6:11] + 0.5) * sx, (row[11:16] + 0.5) * sy], axis=1)
        faces.append(Face(tuple(float(v) for v in box), landmarks, score))
    faces.sort(key=lambda face: (-face.area, -face.score))
    return faces


def largest_face(rgb, min_score: float = MIN_SCORE, max_side: int = DETECT_MAX_SIDE) -> Face:
    """The largest face in the image (see :func:`detect_faces`); raises :class:`NoFaceFound` if there is none."""
    faces = detect_faces(rgb, min_score=min_score, max_side=max_side)
    if not faces:
        raise NoFaceFound(f"no face found (detector confidence >= {min_score})")
    return faces[0]


# --- geometry ---------------------------------------------------------------------------------------------------------

def similarity_transform(src, dst) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation; no reflection, no shear) carrying the
    points ``src`` [N, 2] onto ``dst`` [N, 2], as a 2x3 matrix ``M``: ``dst ~= src @ M[:, :2].T + M[:, 2]``.

    This is Umeyama's solution (1991) written for the plane, where it has a closed form: with both point sets
    centred, the rotation-and-scale [[a, -b], [b, a]] has ``a = sum(x*x' + y*y') / sum(x^2 + y^2)`` and
    ``b = sum(x*y' - y*x') / sum(x^2 + y^2)``. Raises ValueError on mismatched shapes, fewer than two points,
    non-finite values, or degenerate input: all ``src`` points (or all ``dst`` points) in one place, which leaves
    the rotation undefined (or the scale zero).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape:
        raise ValueError(f"expected two [N, 2] point arrays of the same shape, got {list(src.shape)} and "
                         f"{list(dst.shape)}")
    if src.shape[0] < 2:
        raise ValueError(f"a similarity needs at least 2 points, got {src.shape[0]}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    p, q = src - src_mean, dst - dst_mean
    src_var, dst_var = float((p * p).sum()), float((q * q).sum())
    # "In one place" relative to where the points are: coordinates in the thousands still get a fair test.
    scale_ref = max(1.0, float(np.abs(src).max()), float(np.abs(dst).max()))
    tolerance = (1e-9 * scale_ref) ** 2 * src.shape[0]
    if src_var <= tolerance:
        raise ValueError("degenerate source points: all in one place, so no rotation or scale can be fitted")
    if dst_var <= tolerance:
        raise ValueError("degenerate target points: all in one place, which would need a zero scale")
    a = float((p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]).sum()) / src_var
    b = float((p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum()) / src_var
    if math.hypot(a, b) <= 1e-12:
        raise ValueError("degenerate fit: the best similarity has zero scale (the point sets are unrelated)")
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def apply_transform(matrix, points) -> np.ndarray:
    """Points [N, 2] through a 2x3 affine matrix (as from :func:`similarity_transform`)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def check_template(template) -> np.ndarray:
    """A template as a float [5, 2] array, checked: finite fractions in [0, 1] with the eyes apart (a template from a
    manifest goes through here before it is used). Raises ValueError naming the problem."""
    try:
        template = np.asarray(template, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"template is not numeric: {error}") from None
    if template.shape != (len(LANDMARKS), 2):
        raise ValueError(f"template must be [{len(LANDMARKS)}, 2] ({', '.join(LANDMARKS)}), got "
                         f"{list(template.shape)}")
    if not np.isfinite(template).all() or template.min() < 0.0 or template.max() > 1.0:
        raise ValueError("template points must be finite fractions of the side, in [0, 1]")
    if np.hypot(*(template[1] - template[0])) < 0.01:
        raise ValueError("template eyes coincide")
    return template


def framing_transform(landmarks, template, size: int) -> np.ndarray:
    """The 2x3 similarity carrying photo pixels onto a ``size`` x ``size`` framed face: the one :func:`frame_face`
    warps with and :func:`unframe_change` inverts."""
    return similarity_transform(landmarks, check_template(template) * int(size))


def frame_face(rgb, landmarks, template, size: int, border: str = "reflect") -> np.ndarray:
    """Warp a uint8 RGB image [H, W, 3] so that ``landmarks`` ([5, 2], image pixels) land on ``template * size`` in a
    ``size`` x ``size`` output; returns the output as uint8 [size, size, 3].

    The similarity is fitted by :func:`similarity_transform`. When it shrinks the photo (the usual case: a face in
    a phone photo is far larger than ``size``), the region the output needs is first downscaled with Lanczos to the
    output's scale, so the final bicubic warp does not alias. Parts of the output outside the photo are filled by
    ``border``: ``"reflect"`` (mirror the photo at its edge, as CelebA-HQ's own framing does), ``"edge"`` (repeat
    the edge pixels) or ``"constant"`` (black).
    """
    rgb = _check_rgb(rgb)
    template = check_template(template)
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if border not in ("reflect", "edge", "constant"):
        raise ValueError(f"border must be 'reflect', 'edge' or 'constant', got {border!r}")
    forward = framing_transform(landmarks, template, size)  # photo -> output
    linear = forward[:, :2]
    scale = math.sqrt(abs(np.linalg.det(linear)))
    inverse_linear = np.linalg.inv(linear)
    inverse = np.hstack([inverse_linear, (-inverse_linear @ forward[:, 2])[:, None]])  # output -> photo

    height, width = rgb.shape[:2]
    # The part of the photo the output square covers, with room for the resampling filters at both stages.
    corners = apply_transform(inverse, [[0, 0], [size, 0], [0, size], [size, size]])
    margin = 4.0 / min(scale, 1.0)
    x0, y0 = np.floor(corners.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0) + margin).astype(int)
    crop = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
    if crop[0] >= crop[2] or crop[1] >= crop[3]:
        raise ValueError("the landmarks place the face entirely outside the image")

    image = Image.fromarray(rgb)
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    if scale < 1.0:
        # Downscale the needed region to the output's scale first (antialiased), then warp at a scale near 1.
        new_w, new_h = max(1, math.ceil(crop_w * scale)), max(1, math.ceil(crop_h * scale))
        region = image.resize((new_w, new_h), Image.Resampling.LANCZOS, box=crop)
        kx, ky = new_w / crop_w, new_h / crop_h
    else:
        region = image.crop(crop)
        kx = ky = 1.0
    # The whole needed box in region coordinates; pad the region out to it where it runs past the photo's edge.
    pad_left = max(0, math.ceil((crop[0] - x0) * kx))
    pad_top = max(0, math.ceil((crop[1] - y0) * ky))
    pad_right = max(0, math.ceil((x1 - crop[2]) * kx))
    pad_bottom = max(0, math.ceil((y1 - crop[3]) * ky))
    if pad_left or pad_top or pad_right or pad_bottom:
        pixels = np.asarray(region)
        mode = "symmetric" if border == "reflect" else border
        pixels = np.pad(pixels, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode=mode)
        region = Image.fromarray(pixels)

    # output -> photo -> region (shift to the crop, scale by k, shift by the padding); Pillow samples the input at
    # (a*x + b*y + c, d*x + e*y + f) for each output point, in the same continuous coordinates used here.
    to_region = np.array([[kx, 0.0, pad_left - crop[0] * kx],
                          [0.0, ky, pad_top - crop[1] * ky]])
    composed = to_region[:, :2] @ inverse[:, :2]
    offset = to_region[:, :2] @ inverse[:, 2] + to_region[:, 2]
    coefficients = (composed[0, 0], composed[0, 1], offset[0], composed[1, 0], composed[1, 1], offset[1])
    framed = region.transform((size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BICUBIC,
                              fillcolor=(0, 0, 0))
    return np.asarray(framed, dtype=np.uint8).copy()


def border_feather(size: int, width: float) -> np.ndarray:
    """float32 [size, size] weights: 1 inside, falling smoothly (smoothstep) to 0 over ``width`` pixels at each edge
    of the square, so that whatever is multiplied by it fades out before the framed square's edge."""
    centres = np.arange(size, dtype=np.float64) + 0.5
    distance = np.minimum(centres, size - centres)  # to the nearest edge, along one axis
    t = np.clip(distance / max(float(width), 1e-6), 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    return np.outer(ramp, ramp).astype(np.float32)


def unframe_change(rgb, change, landmarks, template) -> np.ndarray:
    """The inverse of :func:`frame_face` for an edit: ``change`` (float [S, S, 3], pixel levels, in the framed face's
    coordinates, S its side) is warped back through the inverse of the framing similarity onto the photo ``rgb``
    (uint8 [H, W, 3]) and added to it; returns the photo, same size, as uint8 (rounded half to even, clipped).

    Only the change travels, not the framed face: the photo keeps its own resolution and detail everywhere, and
    where the change is zero (outside the framed square, or where the edit touched nothing) its pixels are exactly
    the photo's. The change is sampled bilinearly (Pillow, per channel) at each photo pixel's centre; a change
    that does not fade to zero at the square's edge would show a seam there (multiply by :func:`border_feather`
    first).
    """
    rgb = _check_rgb(rgb)
    change = np.asarray(change, dtype=np.float32)
    if change.ndim != 3 or change.shape[0] != change.shape[1] or change.shape[2] != 3:
        raise ValueError(f"expected a square change [S, S, 3], got {list(change.shape)}")
    size = change.shape[0]
    forward = framing_transform(landmarks, template, size)  # photo -> framed
    linear = forward[:, :2]
    inverse_linear = np.linalg.inv(linear)
    inverse = np.hstack([inverse_linear, (-inverse_linear @ forward[:, 2])[:, None]])  # framed -> photo
    height, width = rgb.shape[:2]
    corners = apply_transform(inverse, [[0, 0], [size, 0], [0, size], [size, size]])
    x0, y0 = (max(0, int(v)) for v in np.floor(corners.min(axis=0)))
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x1, y1 = min(width, int(x1)), min(height, int(y1))
    out = rgb.copy()
    if x0 >= x1 or y0 >= y1:
        return out
    # Pillow samples the input at (a*x + b*y + c, d*x + e*y + f) for each output pixel's centre, in the continuous
    # coordinates used here: the box's pixel (x, y) is the photo's (x + x0, y + y0), carried into the framed square.
    coefficients = (forward[0, 0], forward[0, 1], forward[0, 0] * x0 + forward[0, 1] * y0 + forward[0, 2],
                    forward[1, 0], forward[1, 1], forward[1, 0] * x0 + forward[1, 1] * y0 + forward[1, 2])
    sampled = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(change[..., channel]), "F").transform(
        (x1 - x0, y1 - y0), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR, fillcolor=0.0))
        for channel in range(3)], axis=2)
    region = out[y0:y1, x0:x1].astype(np.float32) + sampled
    out[y0:y1, x0:x1] = np.clip(np.round(region), 0, 255).astype(np.uint8)
    return out


# --- the template -----------------------------------------------------------------------------------------------------

def mean_landmarks(images: Iterable, min_score: float = MIN_SCORE) -> MeanLandmarks:
    """The template: the mean landmark positions, as fractions of each image's width and height, over ``images``
    (uint8 RGB arrays [H, W, 3] from the training set, which are already aligned; any sizes).

    The plain mean, not a Procrustes mean: the training faces' position and size are exactly what framing must
    reproduce. Images where no face is found are skipped and counted; each image's largest face is used. Raises
    NoFaceFound if no image gave a face.
    """
    points, skipped = [], 0
    for rgb in images:
        rgb = _check_rgb(rgb)
        faces = detect_faces(rgb, min_score=min_score)
        if not faces:
            skipped += 1
            continue
        height, width = rgb.shape[:2]
        points.append(faces[0].landmarks / np.array([width, height], dtype=np.float64))
    if not points:
        raise NoFaceFound(f"no face found in any of the {skipped} images")
    stacked = np.stack(points)
    return MeanLandmarks(stacked.mean(axis=0), len(points), skipped, stacked.std(axis=0))
