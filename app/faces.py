"""From a seed and attributes to image bytes: latents, attribute vectors, resizing, PNG/GIF/WebP encoding.

Plain functions on plain values; the HTTP layer only parses queries into :class:`FaceRequest` and sends bytes.
Determinism is the rule: the same request gives the same bytes in every process (seeded legacy NumPy stream,
graph-side rounding to uint8, fixed encoder settings, no timestamps in the files; the one text chunk is the
provenance XMP, fixed for a given face: facegen/provenance.py).
"""

import math
import zlib
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import urlencode

import numpy as np
from PIL import Image

from app import limits
from app.models import Model, ModelDescription
from facegen import attributes, model_folder, provenance

# zlib level 1 with Huffman coding only (no LZ77 match search): PNG's row filters already turn a photograph into
# small residuals, which entropy coding alone packs about as well as level 6 does, at a fraction of the CPU
# (bench/provenance_cost.py, BENCHMARKS.md "What the marks cost"); the service is CPU-bound, the bytes are not.
PNG_OPTIONS = {"optimize": False, "compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY}  # Pillow's save options


@dataclass(frozen=True, eq=False)
class FaceInputs:
    """What a seed and its constraints resolve to: the generator's inputs and whether a training row matched."""

    noise: np.ndarray  # float32 [latent_size], times psi
    attributes: np.ndarray  # float32 0/1 [A], in manifest order
    matched: str | None  # "exact" / "nearest" for table sampling, None for independent draws


@dataclass(frozen=True)
class FaceRequest:
    """Everything that determines one face image; hashable, so it can key a cache of encoded PNGs.

    ``attrs`` holds the query's constraints as signed names in manifest spelling and order (``("Male",
    "-Eyeglasses")``: Male on, Eyeglasses off, the rest drawn from the seed), or None when the query gave none;
    ``()`` fixes nothing, like None. ``model`` compares by identity, so a reloaded model never matches entries made
    with the old one.
    """

    model: ModelDescription  # a served Model; generate's parent resolves with the manifest's description alone
    seed: int
    attrs: tuple[str, ...] | None = None
    psi: float = limits.DEFAULT_PSI
    size: int | None = None  # None: the model's own resolution
    # The inputs the fields above resolve to, when a route has resolved them already (headers need them), so the
    # cache key and the batch do not resolve again. Not part of equality: they follow from the fields.
    inputs: FaceInputs | None = field(default=None, compare=False, repr=False)

    @classmethod
    def resolving(cls, model: ModelDescription, seed: int, attrs: tuple[str, ...] | None = None,
                  psi: float = limits.DEFAULT_PSI, size: int | None = None) -> "FaceRequest":
        return cls(model, seed, attrs, psi, size, resolve(model, seed, attrs, psi))

    def resolved(self) -> FaceInputs:
        """The noise and attributes of this face (facegen/attributes.py's rules)."""
        return self.inputs if self.inputs is not None else resolve(self.model, self.seed, self.attrs, self.psi)

    @property
    def output_size(self) -> int:
        return self.size or self.model.resolution

    def query(self) -> str:
        """The canonical query string of this face, for permalinks and JSON listings."""
        params = {"model": self.model.name, "seed": self.seed}
        if self.attrs:
            params["attrs"] = ",".join(self.attrs)
        if self.psi != limits.DEFAULT_PSI:
            params["psi"] = repr(self.psi)
        if self.size is not None and self.size != self.model.resolution:
            params["size"] = self.size
        return urlencode(params, safe=",")


def resolve(model: ModelDescription, seed: int, attrs: tuple[str, ...] | None = None,
            psi: float = limits.DEFAULT_PSI) -> FaceInputs:
    """seed + constraints -> the face's inputs, by the rules of facegen.attributes (table or independent)."""
    noise, vector, matched = attributes.seed_face(seed, model.latent_size, psi, model.attribute_frequencies,
                                                  model.attribute_table, attrs, model.attributes)
    return FaceInputs(noise, vector, matched)


def face_inputs(request: FaceRequest) -> tuple[np.ndarray, np.ndarray]:
    inputs = request.resolved()
    return inputs.noise, inputs.attributes


def render_faces(requests: Sequence[FaceRequest]) -> np.ndarray:
    """Requests for one model -> uint8 [N, H, W, 3] at native resolution, in a single generator call."""
    model = requests[0].model
    if any(r.model is not model for r in requests):
        raise ValueError("render_faces: all requests must use the same model")
    inputs = [face_inputs(r) for r in requests]
    noise = np.stack([n for n, _ in inputs])
    attrs = np.stack([a for _, a in inputs]).reshape(len(requests), len(model.attributes))
    return model.generate(noise, attrs)


def to_image(pixels: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(model_folder.resize_face(pixels, size), "RGB")


def encode_png(image: Image.Image, mark: provenance.Mark) -> bytes:
    """Every PNG the service sends is made here, marked as synthetic (facegen/provenance.py: XMP, watermark,
    C2PA when configured). Pillow writes no tIME/tEXt chunks unless asked, and fixed settings keep the zlib stream
    identical."""
    return provenance.encode(image, "png", mark, PNG_OPTIONS)


def face_mark(request: FaceRequest) -> provenance.Mark:
    return provenance.generated(request.model.name, request.model.version, [request.seed], "face")


JPEG_QUALITY = 95  # generate --format jpg; fixed settings, so the same face gives the same bytes


def encode_jpeg(image: Image.Image, mark: provenance.Mark) -> bytes:
    """JPEG bytes with fixed settings: quality JPEG_QUALITY, no chroma subsampling (the faces are small); marked
    like encode_png's PNGs (facegen/provenance.py)."""
    return provenance.encode(image, "jpeg", mark, {"quality": JPEG_QUALITY, "subsampling": 0, "optimize": False})


def encode_face(request: FaceRequest, pixels: np.ndarray, fmt: str = "png") -> bytes:
    """One face's file bytes: every face /api/face sends (in its micro-batcher's thread, app/batcher.py) and every
    file ``python -m facegen generate`` writes (app/generate.py) is encoded here, so generate's files are the service's faces, byte for byte.
    ``fmt``: "png" (what the service sends) or "jpg" (generate only)."""
    image = to_image(pixels, request.output_size)
    if fmt == "jpg":
        return encode_jpeg(image, face_mark(request))
    if fmt != "png":
        raise ValueError(f"unknown face format {fmt!r}")
    return encode_png(image, face_mark(request))


def render_png(request: FaceRequest) -> bytes:
    """One face as PNG bytes: the seam where an LRU cache of encoded faces can sit."""
    return encode_png(to_image(render_faces([request])[0], request.output_size), face_mark(request))


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows): as square as possible, filled row by row."""
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


def render_grid_png(requests: Sequence[FaceRequest], cell_size: int, faces: Sequence[np.ndarray]) -> bytes:
    """The grid PNG of ``requests``, given their faces (uint8 [H, W, 3] each, in order: the micro-batcher's)."""
    columns, rows = grid_shape(len(requests))
    canvas = Image.new("RGB", (columns * cell_size, rows * cell_size))
    for index, pixels in enumerate(faces):
        row, column = divmod(index, columns)
        canvas.paste(to_image(pixels, cell_size), (column * cell_size, row * cell_size))
    model = requests[0].model
    return encode_png(canvas, provenance.generated(model.name, model.version, [r.seed for r in requests], "grid"))


def slerp(start: np.ndarray, end: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: Gaussian latents live near a sphere, and a straight line between two of them
    passes through shorter, atypical vectors (washed-out faces mid-way)."""
    a, b = start.astype(np.float64), end.astype(np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = np.clip(np.dot(a, b) / norms, -1.0, 1.0) if norms > 0 else 1.0
    omega = math.acos(cosine)
    if math.sin(omega) < 1e-6:  # (nearly) parallel: the two paths coincide
        return ((1 - t) * a + t * b).astype(np.float32)
    return ((math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)).astype(np.float32)


@dataclass(frozen=True)
class InterpolationRequest:
    model: Model
    start_seed: int
    end_seed: int
    start_attrs: tuple[str, ...] | None
    end_attrs: tuple[str, ...] | None
    steps: int
    psi: float = limits.DEFAULT_PSI
    size: int | None = None
    format: str = "gif"


def interpolation_ends(request: InterpolationRequest) -> tuple[FaceInputs, FaceInputs]:
    """Both ends resolved exactly as /api/face resolves (seed, attrs): each end is that face."""
    return (resolve(request.model, request.start_seed, request.start_attrs, request.psi),
            resolve(request.model, request.end_seed, request.end_attrs, request.psi))


@dataclass(frozen=True, eq=False)
class InputsFace:
    """A face given by its generator inputs rather than a seed (an interpolation's frame): an item for the model's
    micro-batcher, which needs ``model`` and ``resolved()``. Never a cache key: it has no seed."""

    model: Model
    inputs: FaceInputs

    def resolved(self) -> FaceInputs:
        return self.inputs


def interpolation_frames(request: InterpolationRequest) -> list[InputsFace]:
    """The frames' inputs: slerp between the ends' latents, their attributes linearly."""
    start, end = interpolation_ends(request)
    frames = []
    for i in range(request.steps):
        t = i / (request.steps - 1)
        attrs = ((1 - t) * start.attributes + t * end.attributes).astype(np.float32)
        frames.append(InputsFace(request.model, FaceInputs(slerp(start.noise, end.noise, t), attrs, None)))
    return frames


def render_animation(request: InterpolationRequest, faces: Sequence[np.ndarray]) -> bytes:
    """The animation of ``request``, given its frames' faces (of interpolation_frames, in order)."""
    size = request.size or request.model.resolution
    frames = [to_image(pixels, size) for pixels in faces]
    mark = provenance.generated(request.model.name, request.model.version, [request.start_seed, request.end_seed],
                                "interpolation")
    return encode_animation(frames, request.format, mark)


def encode_animation(frames: Sequence[Image.Image], fmt: str, mark: provenance.Mark,
                     frame_milliseconds: int = limits.FRAME_MILLISECONDS) -> bytes:
    """Every animation the service sends is made here, marked like encode_png's PNGs."""
    options = {"duration": frame_milliseconds, "loop": 0}
    if fmt == "gif":
        options["optimize"] = False
    elif fmt == "webp":
        # Lossless: faces are small, and lossy WebP smears the fine detail that makes a morph worth watching.
        options.update(lossless=True, method=4)
    else:
        raise ValueError(f"unknown animation format {fmt!r}")
    return provenance.encode(frames, fmt, mark, options)
