"""An invisible, zero-bit watermark: "this image came out of facegen", readable after JPEG, halving and cropping.

Embedding adds a fixed pseudo-random luminance pattern, a TILE x TILE tile repeated over the whole image, at a
strength that follows the image's own texture (more where there is detail to hide it, a floor of MIN_STRENGTH grey
levels elsewhere). Its noise lives at half resolution (each random value covers 2 x 2 pixels, then smoothed), so
the pattern survives resizing to half, which removes the finest detail first.

Detection does not need to know where the image was cut or whether it was halved: for each scale it searches
(:data:`SCALES`) it brings the image back to the embedding scale, keeps the fine detail (the image minus a blur of
itself), folds it onto one tile (every pixel adds into cell (y mod TILE, x mod TILE): a crop only shifts the fold
cyclically) and finds the best cyclic alignment with the key tile by phase correlation. The score is that peak
in standard deviations of the correlation surface; an unmarked photo's peak is the largest of TILE**2 roughly
normal values per scale, about 4, and :data:`THRESHOLD` sits well above what real photos reach
(bench/watermark_robustness.py measures both sides, BENCHMARKS.md has the figures).

It is not a secret and not a proof: the key is public (anyone can check, so anyone could also imitate or try to
scrub it), and images smaller than :data:`MIN_SIDE` carry no watermark at all: there is too little image to fold
for the mark to survive the transformations above (measured, BENCHMARKS.md), so only their metadata marks them.

numpy and Pillow only: it runs wherever the service runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

KEY = 0x6661636567656E  # "facegen": public on purpose, so that anyone can check an image
TILE = 32  # the pattern's period in pixels at the embedding scale
SCALES = (1.0, 0.5)  # the image as embedded, and resized to half
MIN_STRENGTH = 1.5  # grey levels (0-255) added at least, where the image is flat
TEXTURE_GAIN = 0.35  # ... plus this fraction of the local detail's magnitude
MAX_STRENGTH = 5.0
THRESHOLD = 7.0  # peak height, in standard deviations of the correlation surface, to call an image marked
MIN_SIDE = 128  # smaller images are not watermarked (see the module docstring and BENCHMARKS.md)
# Detection looks at most this many pixels a side (a centred crop): the fold needs a few tiles, not a 40 MP upload,
# and a crop costs the mark nothing (it is tiled everywhere).
MAX_DETECT_SIDE = 1024
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@lru_cache(maxsize=1)
def key_tile() -> np.ndarray:
    """float32 [TILE, TILE], zero mean, unit variance: the pattern. Half-resolution noise, upsampled and smoothed."""
    coarse = np.random.RandomState(KEY % (2 ** 32)).choice([-1.0, 1.0], size=(TILE // 2, TILE // 2))
    fine = np.kron(coarse, np.ones((2, 2)))
    smooth = (fine + np.roll(fine, 1, 0) + np.roll(fine, 1, 1) + np.roll(np.roll(fine, 1, 0), 1, 1)) / 4
    smooth = (fine + smooth) / 2
    smooth -= smooth.mean()
    return (smooth / smooth.std()).astype(np.float32)


def _box_blur(values: np.ndarray, radius: int = 1) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated."""
    padded = np.pad(values, radius, mode="edge")
    size = 2 * radius + 1
    total = np.zeros_like(values, dtype=np.float32)
    for dy in range(size):
        for dx in range(size):
            total += padded[dy:dy + values.shape[0], dx:dx + values.shape[1]]
    return total / (size * size)


def _luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3].astype(np.float32) @ LUMA


def large_enough(width: int, height: int) -> bool:
    return min(width, height) >= MIN_SIDE


def embed(pixels: np.ndarray, force: bool = False) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> the same image with the mark (every channel moved alike: hue is left alone).

    Images smaller than MIN_SIDE on either side come back unchanged unless ``force`` (measurements only).
    Deterministic: the same pixels give the same marked pixels.
    """
    height, width = pixels.shape[:2]
    if not (force or large_enough(width, height)):
        return pixels
    luma = _luminance(pixels)
    detail = np.abs(luma - _box_blur(luma))
    strength = np.clip(MIN_STRENGTH + TEXTURE_GAIN * _box_blur(detail), MIN_STRENGTH, MAX_STRENGTH)
    tile = key_tile()
    pattern = np.tile(tile, (-(-height // TILE), -(-width // TILE)))[:height, :width]
    marked = pixels.astype(np.float32) + (strength * pattern)[..., None]
    return np.clip(np.rint(marked), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Detection:
    detected: bool
    score: float  # the best peak, in standard deviations of its correlation surface
    scale: float  # the scale it was found at (1.0: as embedded; 0.5: the image was halved)
    searched: tuple[float, ...]

    def as_dict(self) -> dict:
        return {"detected": self.detected, "score": round(self.score, 2), "threshold": THRESHOLD,
                "scale": self.scale, "scales_searched": list(self.searched)}


def _fold(values: np.ndarray) -> np.ndarray:
    height, width = values.shape
    rows, columns = -(-height // TILE), -(-width // TILE)
    padded = np.zeros((rows * TILE, columns * TILE), np.float32)
    counts = np.zeros_like(padded)
    padded[:height, :width] = values
    counts[:height, :width] = 1
    folded = padded.reshape(rows, TILE, columns, TILE).sum(axis=(0, 2))
    count = counts.reshape(rows, TILE, columns, TILE).sum(axis=(0, 2))
    return folded / np.maximum(count, 1)


def _score(luma: np.ndarray) -> float:
    residual = luma - _box_blur(luma)
    residual /= _box_blur(np.abs(residual), 2) + 1.0  # whiten: edges must not outvote flat areas
    folded = _fold(residual)
    spectrum = np.fft.fft2(folded - folded.mean()) * np.conj(np.fft.fft2(key_tile()))
    surface = np.real(np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)))
    spread = surface.std()
    return float((surface.max() - surface.mean()) / spread) if spread > 0 else 0.0


def detect(image: Image.Image | np.ndarray) -> Detection:
    """Whether an image (any size, any mode) carries the mark, at any of SCALES and any crop offset."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    picture = picture.convert("RGB")
    best_score, best_scale = -np.inf, SCALES[0]
    for scale in SCALES:
        side = round(MAX_DETECT_SIDE * scale)  # so that the rescaled crop is at most MAX_DETECT_SIDE
        left, top = max(0, (picture.width - side) // 2), max(0, (picture.height - side) // 2)
        crop = picture.crop((left, top, min(picture.width, left + side), min(picture.height, top + side)))
        width, height = (round(crop.width / scale), round(crop.height / scale))
        if min(width, height) < TILE:
            continue
        resized = crop if scale == 1.0 else crop.resize((width, height), Image.Resampling.BICUBIC)
        score = _score(_luminance(np.asarray(resized)))
        if score > best_score:
            best_score, best_scale = score, scale
    best_score = max(best_score, 0.0)
    return Detection(best_score >= THRESHOLD, best_score, best_scale, SCALES)
