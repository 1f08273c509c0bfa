"""From a seed and attributes to image bytes: latents, attribute vectors, resizing, PNG/GIF/WebP encoding.

Plain functions on plain values; the HTTP layer only parses queries into :class:`FaceRequest` and sends bytes.
Determinism is the rule: the same request gives the same bytes in every process (seeded legacy NumPy stream,
graph-side rounding to uint8, fixed encoder settings, no timestamps or text chunks in the files).
"""

import io
import math
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlencode

import numpy as np
from PIL import Image

from app import limits
from app.errors import ApiError
from app.models import Model
from facegen import model_folder

# Lanczos rather than nearest: a GAN face is a small photograph, not pixel art, and nearest-neighbour blocks
# look worse than a smooth enlargement; Lanczos also antialiases when a size below the native one is asked for.
RESAMPLE = Image.Resampling.LANCZOS
PNG_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class FaceRequest:
    """Everything that determines one face image; hashable, so it can key a cache of encoded PNGs.

    ``attrs`` holds the names that are on, in manifest spelling and order, or None for "sample them from the seed".
    ``model`` compares by identity, so a reloaded model never matches entries made with the old one.
    """

    model: Model
    seed: int
    attrs: tuple[str, ...] | None = None
    psi: float = limits.DEFAULT_PSI
    size: int | None = None  # None: the model's own resolution

    @property
    def output_size(self) -> int:
        return self.size or self.model.resolution

    def query(self) -> str:
        """The canonical query string of this face, for permalinks and JSON listings."""
        params = {"model": self.model.name, "seed": self.seed}
        if self.attrs is not None:
            params["attrs"] = ",".join(self.attrs)
        if self.psi != limits.DEFAULT_PSI:
            params["psi"] = repr(self.psi)
        if self.size is not None and self.size != self.model.resolution:
            params["size"] = self.size
        return urlencode(params, safe=",")


def parse_attrs(raw: str | None, model: Model, name: str = "attrs") -> tuple[str, ...] | None:
    """'male, SMILING' -> ('Male', 'Smiling') in manifest order; None stays None (sampled); '' is all off."""
    if raw is None:
        return None
    by_lower = {a.lower(): a for a in model.attributes}
    wanted = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [w for w in wanted if w.lower() not in by_lower]
    if unknown:
        shown = ", ".join(repr(u[:40]) for u in unknown[:5])
        allowed = list(model.attributes)
        if not allowed:
            raise ApiError(f"{name}: model {model.name!r} is unconditional and has no attributes, got {shown}",
                           allowed=allowed)
        raise ApiError(f"{name}: unknown attribute {shown} for model {model.name!r}; allowed: {', '.join(allowed)}",
                       allowed=allowed)
    on = {by_lower[w.lower()] for w in wanted}
    return tuple(a for a in model.attributes if a in on)


def attribute_vector(model: Model, names: Sequence[str]) -> np.ndarray:
    return np.array([1.0 if a in names else 0.0 for a in model.attributes], dtype=np.float32)


def seed_inputs(model: Model, seed: int, psi: float = limits.DEFAULT_PSI) -> tuple[np.ndarray, np.ndarray]:
    """seed -> (noise [L] float32, sampled attributes [A] float32): the contract's rule (facegen.model_folder)."""
    return model_folder.seed_inputs(seed, model.latent_size, model.attribute_frequencies, psi)


def face_inputs(request: FaceRequest) -> tuple[np.ndarray, np.ndarray]:
    noise, sampled = seed_inputs(request.model, request.seed, request.psi)
    attrs = sampled if request.attrs is None else attribute_vector(request.model, request.attrs)
    return noise, attrs


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
    image = Image.fromarray(pixels, "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), RESAMPLE)
    return image


def encode_png(image: Image.Image) -> bytes:
    # Pillow writes no tIME/tEXt chunks unless asked, and fixed settings keep the zlib stream identical.
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def render_png(request: FaceRequest) -> bytes:
    """One face as PNG bytes: the seam where an LRU cache of encoded faces can sit."""
    return encode_png(to_image(render_faces([request])[0], request.output_size))


def grid_shape(count: int) -> tuple[int, int]:
    """(columns, rows): as square as possible, filled row by row."""
    columns = math.ceil(math.sqrt(count))
    return columns, math.ceil(count / columns)


def render_grid_png(requests: Sequence[FaceRequest], cell_size: int) -> bytes:
    columns, rows = grid_shape(len(requests))
    canvas = Image.new("RGB", (columns * cell_size, rows * cell_size))
    for index, pixels in enumerate(render_faces(requests)):
        row, column = divmod(index, columns)
        canvas.paste(to_image(pixels, cell_size), (column * cell_size, row * cell_size))
    return encode_png(canvas)


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


def interpolation_inputs(request: InterpolationRequest) -> tuple[np.ndarray, np.ndarray]:
    """Frames' (noise [steps, L], attrs [steps, A]): slerp between the latents, attributes linearly.

    An end without attributes uses the ones its seed samples, so both ends are always concrete vectors."""
    ends = []
    for seed, names in ((request.start_seed, request.start_attrs), (request.end_seed, request.end_attrs)):
        noise, sampled = seed_inputs(request.model, seed, request.psi)
        ends.append((noise, sampled if names is None else attribute_vector(request.model, names)))
    (noise_a, attrs_a), (noise_b, attrs_b) = ends
    times = [i / (request.steps - 1) for i in range(request.steps)]
    noise = np.stack([slerp(noise_a, noise_b, t) for t in times])
    attrs = np.stack([((1 - t) * attrs_a + t * attrs_b).astype(np.float32) for t in times])
    return noise, attrs.reshape(request.steps, len(request.model.attributes))


def render_animation(request: InterpolationRequest) -> bytes:
    noise, attrs = interpolation_inputs(request)
    size = request.size or request.model.resolution
    frames = [to_image(pixels, size) for pixels in request.model.generate(noise, attrs)]
    return encode_animation(frames, request.format)


def encode_animation(frames: Sequence[Image.Image], fmt: str,
                     frame_milliseconds: int = limits.FRAME_MILLISECONDS) -> bytes:
    buffer = io.BytesIO()
    options = {"save_all": True, "append_images": list(frames[1:]), "duration": frame_milliseconds, "loop": 0}
    if fmt == "gif":
        frames[0].save(buffer, format="GIF", optimize=False, **options)
    elif fmt == "webp":
        # Lossless: faces are small, and lossy WebP smears the fine detail that makes a morph worth watching.
        frames[0].save(buffer, format="WEBP", lossless=True, method=4, **options)
    else:
        raise ValueError(f"unknown animation format {fmt!r}")
    return buffer.getvalue()
