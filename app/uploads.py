"""Uploaded portraits: request -> bytes (:func:`read_upload`) -> uint8 RGB pixels [H, W, 3] (:func:`decode_image`).

Everything happens in memory: the bytes are never written to disk (multipart parts included) nor logged, and no
error message quotes them. Every refusal is an :class:`UploadError` carrying its HTTP status; it is an
``ApiError``, so a route that lets it propagate answers JSON ``{"error": ..., "allowed": ...}`` with that status.

What is accepted, and why:

- JPEG, PNG (APNG too) and WebP, recognised by their bytes, never by the declared Content-Type or file name. Only
  these three Pillow decoders are ever run on an upload. GIF and BMP are refused (415): GIF holds at most 256
  colours, which is too poor for a portrait, and is mostly animation; BMP is uncompressed (a 10 MB BMP is a 3 MP
  photo) and no phone or browser produces one. HEIC/AVIF/TIFF are refused too (Pillow has no decoder for the
  first two; browsers send JPEG when a page asks for it).
- Bytes: at most :data:`MAX_UPLOAD_BYTES` (413). Pixels: at most :data:`MAX_PIXELS` (PNG and WebP, decoded whole)
  or :data:`MAX_JPEG_PIXELS` (JPEG, decoded reduced) and :data:`MAX_SIDE` on either side (413), checked from the
  header before any pixel is decoded, which stops decompression bombs (a PNG of a few kB can claim gigapixels); at
  least :data:`MIN_SIDE` on each side (400). Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` is left as it is, so
  the limits here can be arguments: Pillow's own bomb error (above 179 MP) is answered 413 too, and from 89 to 179
  MP Pillow also issues its DecompressionBombWarning, whose text holds only the pixel count. A PNG text or profile
  chunk that inflates past Pillow's 1 MB per chunk is a bomb too (413, said so).
- Memory: the face detector looks at a copy at most 640 px on a side and the framing at the face's own box, scaled
  down to the model's resolution, so nothing needs the photo beyond :data:`WORK_MAX_SIDE` on its long side. A JPEG
  is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, Pillow's ``draft``) when that still leaves that
  much; anything larger afterwards is reduced by box averaging (``Image.reduce``) before it is converted to RGB, and
  the freed decoding buffers are handed back to the system (``malloc_trim``). Measured peaks while decoding, at the
  limits: a 16 MP WebP 265 MB (Pillow's WebP decoder holds RGBA copies), a 16 MP PNG with alpha 164 MB, a 40 MP
  progressive JPEG 151 MB (libjpeg keeps every coefficient), a baseline one 80 MB; about 10 MB stay, the result.
  app/admission.py decodes one upload at a time per worker; docs/DEPLOY.md sums it per pod.
- Truncated or corrupt data: 400. ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False (Pillow's default), so a cut
  file fails to decode instead of coming back half grey.
- Time: the whole body must arrive within :data:`UPLOAD_TIMEOUT_S` (``FACEGEN_UPLOAD_TIMEOUT_S``), else 408. Under
  gunicorn the client socket (``environ["gunicorn.socket"]``) gets a read timeout for what is left of that time, so
  a client that stops sending cannot hold a worker thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import os
import struct
import time

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from app.errors import ApiError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MiB: a 12 MP phone JPEG is 2-5 MB
# PNG and WebP have no reduced decoding, so every pixel is decoded: 16 MP (4000 x 4000, above a 12 MP phone photo)
# is 48 MB in RGB, 64 MB with alpha, while it is reduced to the working size.
MAX_PIXELS = 16_000_000
# JPEG (what phones and browsers send) is decoded at a reduced scale: 40 MP comes out at most 10 MP, 30 MB.
MAX_JPEG_PIXELS = 40_000_000
# The long side the decoded photo is reduced to: the detector uses at most 640 px and the framing a face's box, so a
# face a quarter of the photo's width still keeps 512 px, more than the 128 px the models are framed at.
WORK_MAX_SIDE = 2048
MAX_SIDE = 10_000  # long panoramas under MAX_PIXELS still pass; a 100,000 x 10 strip does not
MIN_SIDE = 32  # smaller holds no face worth framing
# Longest a client may take to send its photo: 10 MiB in 30 s is 2.8 Mbit/s, slower than a phone on poor 4G.
UPLOAD_TIMEOUT_S = 30.0

# MIME type -> Pillow format, the only decoders run on an upload.
ACCEPTED_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
ALLOWED = sorted(ACCEPTED_TYPES)
# Multipart bodies may exceed the file's own limit by this much: boundaries, part headers, small text fields.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MAX_MULTIPART_PARTS = 16
# werkzeug's bound on the multipart parser's buffer and on each text field (Flask's MAX_FORM_MEMORY_SIZE default).
MAX_FORM_MEMORY_BYTES = 500_000
# Alpha is composited onto this colour: white, like a transparent PNG shown on a page.
BACKGROUND = (255, 255, 255)

# Leading bytes of formats people send that are not accepted, to name them in the 415's message.
_REFUSED_SIGNATURES = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"), (b"\x00\x00\x01\x00", "ICO"),
)
_ISO_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"mif1": "HEIF",
               b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
# What a corrupt file makes Pillow's decoders raise.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error)


class UploadError(ApiError):
    """An upload refused: ``status`` is the HTTP status (400, 413 or 415), ``message`` names the problem."""

    def __init__(self, status: int, message: str, allowed=None):
        super().__init__(message, status=status, allowed=allowed)


def sniff_type(data: bytes) -> str | None:
    """The accepted MIME type the bytes start like (``image/jpeg``, ``image/png``, ``image/webp``), else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _refused_format(data: bytes) -> str | None:
    for signature, name in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return _ISO_BRANDS.get(data[8:12])
    return None


def _unsupported(data: bytes) -> UploadError:
    name = _refused_format(data)
    what = f"{name} images are not accepted" if name else "not a JPEG, PNG or WebP image"
    return UploadError(415, f"{what}; send JPEG, PNG or WebP", allowed=ALLOWED)


def upload_timeout_s() -> float:
    raw = os.environ.get("FACEGEN_UPLOAD_TIMEOUT_S", "").strip()
    return float(raw) if raw else UPLOAD_TIMEOUT_S


def read_upload(request, field: str = "image", max_bytes: int = MAX_UPLOAD_BYTES,
                timeout_s: float | None = None) -> bytes:
    """The uploaded file's bytes from a Flask/werkzeug request: either the raw body, sent with Content-Type
    image/jpeg, image/png or image/webp, or the part named ``field`` of a multipart/form-data body.

    Call it before anything reads ``request.form`` or ``request.files``: werkzeug's own form parsing spools large
    parts to temporary files, while this one keeps every part in memory. The declared types (of the body or the
    part) only choose between raw and multipart; :func:`decode_image` judges the bytes themselves.
    """
    mimetype = request.mimetype
    if mimetype in ACCEPTED_TYPES:
        limit = max_bytes
    elif mimetype == "multipart/form-data":
        limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    else:
        shown = mimetype or "none"
        raise UploadError(415, f"Content-Type {shown[:100]!r} is not accepted: send the image as the body with "
                               "its image type, or as multipart/form-data", allowed=ALLOWED + ["multipart/form-data"])
    too_large = UploadError(413, f"upload larger than {max_bytes} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    timeout_s = upload_timeout_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    try:
        body = _read_at_most(request.stream, limit + 1, deadline, request.environ.get("gunicorn.socket"))
    except (TimeoutError, ClientDisconnected):
        # werkzeug reports a socket timeout inside its stream as a disconnection: the clock tells them apart.
        if time.monotonic() >= deadline - 0.05:
            raise UploadError(408, f"the upload did not arrive within {timeout_s:g} s") from None
        raise UploadError(400, "the upload was cut off: the body ended before the length it announced") from None
    if len(body) > limit:
        raise too_large
    if request.content_length is not None and len(body) < request.content_length:
        # The client closed its side early: gunicorn hands over what came, which is not the announced body.
        raise UploadError(400, f"the upload was cut off: {len(body)} of the {request.content_length} bytes announced "
                               "arrived")
    if mimetype != "multipart/form-data":
        return body

    parser = FormDataParser(stream_factory=lambda *args, **kwargs: io.BytesIO(),  # parts stay in memory
                            max_form_memory_size=MAX_FORM_MEMORY_BYTES, silent=False,
                            max_form_parts=MAX_MULTIPART_PARTS)
    try:
        _, _, files = parser.parse(io.BytesIO(body), mimetype, len(body), request.mimetype_params)
    except RequestEntityTooLarge:
        raise UploadError(413, "multipart body has too many parts or too large a text field") from None
    except ValueError:
        raise UploadError(400, "malformed multipart/form-data body") from None
    part = files.get(field)
    if part is None:
        raise UploadError(400, f"multipart body has no file field named {field!r}")
    data = part.stream.getvalue()
    if len(data) > max_bytes:
        raise too_large
    return data


def _bomb() -> UploadError:
    # Pillow's own decompression-bomb error: the image claims more than twice Image.MAX_IMAGE_PIXELS.
    return UploadError(413, f"a decompression bomb: the image claims more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} "
                            "pixels")


# What Pillow's PNG reader raises when a compressed text or colour-profile chunk inflates past its limits.
_CHUNK_BOMB_MESSAGES = ("Decompressed data too large", "Too much memory used in text chunks")


def _chunk_bomb(error: Exception) -> UploadError | None:
    if isinstance(error, ValueError) and str(error).startswith(_CHUNK_BOMB_MESSAGES):
        return UploadError(413, "a decompression bomb: a compressed text or colour-profile chunk of this PNG "
                                f"inflates past {PngImagePlugin.MAX_TEXT_CHUNK} bytes")
    return None


def release_memory() -> None:
    """Hand freed heap memory back to the system. glibc keeps large freed blocks (Pillow's decoding buffers) for
    reuse, so a worker that decoded a few big photos would otherwise keep their size for good."""
    if _libc is not None:
        _libc.malloc_trim(0)


try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # noqa: B018 (glibc only; musl and macOS have none)
except (OSError, AttributeError):
    _libc = None


def _read_at_most(stream, count: int, deadline: float | None = None, sock=None) -> bytes:
    """Up to ``count`` bytes of ``stream``: a single read() of a WSGI stream may return less than asked.

    By ``deadline`` (time.monotonic()), else TimeoutError: checked between reads and, where the server's socket is
    known (``sock``), enforced inside each read by the socket's timeout, restored afterwards.
    """
    chunks, total = [], 0
    previous = sock.gettimeout() if sock is not None else None
    try:
        while total < count:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("upload deadline passed")
                if sock is not None:
                    sock.settimeout(remaining)
            chunk = stream.read(min(1024 * 1024, count - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        if sock is not None:
            try:
                sock.settimeout(previous)
            except OSError:
                pass
    return b"".join(chunks)


def decode_image(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
                 max_side: int = MAX_SIDE, min_side: int = MIN_SIDE, max_jpeg_pixels: int = MAX_JPEG_PIXELS,
                 work_max_side: int = WORK_MAX_SIDE) -> np.ndarray:
    """Upload bytes -> uint8 RGB pixels [H, W, 3], upright, at most ``work_max_side`` on the long side (reduced by
    an integer factor, so the pixel grid stays aligned). Raises :class:`UploadError` (400, 413, 415).

    - An animated image (APNG, animated WebP) gives its first frame.
    - EXIF orientation is applied (a phone's portrait shot comes out upright); an unreadable EXIF block is ignored
      rather than refused. Colour profiles (ICC) are not applied: pixel values are used as they are.
    - Every pixel format comes out as 8-bit RGB: greyscale and palette are expanded, 16-bit samples keep their
      high byte, CMYK is converted (naively, like Pillow), and transparency, whether an alpha channel or a
      transparent palette or colour entry, is composited onto white (:data:`BACKGROUND`).
    """
    if len(data) > max_bytes:
        raise UploadError(413, f"upload larger than {max_bytes} bytes")
    if not data:
        raise UploadError(400, "empty upload")
    declared = sniff_type(data)
    if declared is None:
        raise _unsupported(data)
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # set by someone for the whole process: cut files would pass as images
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; uploads need Pillow's default, False")
    try:
        image = Image.open(io.BytesIO(data), formats=[ACCEPTED_TYPES[declared]])  # reads the header only
    except Image.DecompressionBombError:
        raise _bomb() from None
    except _DECODE_ERRORS as error:  # UnidentifiedImageError included: the signature matched, the header did not parse
        raise (_chunk_bomb(error) or UploadError(400, f"corrupt {ACCEPTED_TYPES[declared]} image: its header "
                                                      "cannot be read")) from None
    try:
        with image:
            width, height = image.size
            limit = max_jpeg_pixels if image.format == "JPEG" else max_pixels
            if width * height > limit:
                why = "" if image.format == "JPEG" else f" ({image.format} is decoded whole; JPEG may be larger)"
                raise UploadError(413, f"image is {width}x{height} pixels, more than {limit} in all{why}")
            if max(width, height) > max_side:
                raise UploadError(413, f"image is {width}x{height} pixels, more than {max_side} on a side")
            if min(width, height) < min_side:
                raise UploadError(400, f"image is {width}x{height} pixels, less than {min_side} on a side")
            try:
                if image.format == "JPEG" and max(width, height) > work_max_side:
                    # Decode at the smallest DCT scale that still covers the working size.
                    scale = work_max_side / max(width, height)
                    image.draft(None, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
                image.load()  # the first frame only, for animations
                pixels = _to_rgb(_reduced(image, work_max_side))
            except Image.DecompressionBombError:
                raise _bomb() from None
            except _DECODE_ERRORS as error:
                raise (_chunk_bomb(error) or UploadError(400, f"corrupt or truncated {image.format} image: its "
                                                              "pixels cannot be decoded")) from None
    finally:
        del image
        release_memory()
    return pixels


def _reduced(image: Image.Image, max_side: int) -> Image.Image:
    """The image reduced by the smallest integer factor that brings its long side to ``max_side`` or less (box
    averaging, before any conversion to RGB, so no full-size RGB copy is made); its info (EXIF) is kept."""
    factor = math.ceil(max(image.size) / max_side)
    if factor <= 1:
        return image
    if image.mode in ("P", "1"):  # Image.reduce takes neither: expand first (transparency becomes alpha)
        image = image.convert("RGBA" if image.mode == "P" and "transparency" in image.info else
                              "RGB" if image.mode == "P" else "L")
    elif image.mode == "I;16" or image.mode.startswith("I;16"):
        image = image.convert("I")
    info = dict(image.info)
    reduced = image.reduce(factor)
    reduced.info.update(info)
    return reduced


def _to_rgb(image: Image.Image) -> np.ndarray:
    try:
        upright = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:  # a broken EXIF block: keep the pixels as stored
        upright = image
    mode = upright.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit greyscale PNGs decode to I;16 (or I); Pillow's convert("L") would clip them, so scale here.
        values = np.asarray(upright, dtype=np.float64)
        grey = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        upright = Image.fromarray(grey, mode="L")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in upright.info
    if has_alpha:
        rgba = upright.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        rgb = Image.alpha_composite(background, rgba).convert("RGB")
    else:
        rgb = upright.convert("RGB")
    return np.array(rgb, dtype=np.uint8)
