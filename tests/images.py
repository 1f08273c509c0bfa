"""Image bytes for the upload tests (tests/test_uploads.py, tests/test_edit.py): Pillow-encoded pictures and PNGs
built chunk by chunk, for files Pillow would not write (decompression bombs, 16-bit rows)."""

import io
import struct
import zlib

import numpy as np
from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """``image`` saved as ``fmt`` (Pillow's format name) with Pillow's save ``options``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rgb_of(data: bytes) -> np.ndarray:
    """An encoded image's pixels as uint8 [H, W, 3]."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width: int, height: int, row: bytes, bit_depth: int = 1, colour_type: int = 0) -> bytes:
    """A PNG whose every row holds ``row`` (filter byte 0 added), compressed row by row: a gigapixel image takes a
    few kB (a bomb)."""
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(b"\x00" + row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return PNG_MAGIC + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
