"""POST /api/verify: what provenance marks an uploaded image carries (facegen/provenance.py reads them).

The upload is read like an edit's (app/uploads.py: in memory, the same byte, pixel and side limits, never stored or
logged), and one format more is accepted: GIF, because the service's own interpolations are GIFs. Only the first
frame's pixels are looked at (the watermark); the metadata and credentials are read from the bytes.
"""

from __future__ import annotations

import io

from PIL import Image

from app import uploads
from facegen import provenance

GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
ACCEPTED = uploads.ALLOWED + ["image/gif"]


def is_gif(data: bytes) -> bool:
    return data[:6] in GIF_SIGNATURES


def decode_gif(data: bytes) -> Image.Image:
    """The first frame of a GIF upload as RGB, under app/uploads.py's limits (checked from the header first)."""
    if len(data) > uploads.MAX_UPLOAD_BYTES:
        raise uploads.UploadError(413, f"upload larger than {uploads.MAX_UPLOAD_BYTES} bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=["GIF"])
    except Exception:  # noqa: BLE001 - any decoder failure on untrusted bytes is the same 400
        raise uploads.UploadError(400, "corrupt GIF image: its header cannot be read") from None
    with image:
        width, height = image.size
        if width * height > uploads.MAX_PIXELS or max(width, height) > uploads.MAX_SIDE:
            raise uploads.UploadError(413, f"image is {width}x{height} pixels, over the limits "
                                           f"({uploads.MAX_PIXELS} pixels, {uploads.MAX_SIDE} a side)")
        if min(width, height) < uploads.MIN_SIDE:
            raise uploads.UploadError(400, f"image is {width}x{height} pixels, less than {uploads.MIN_SIDE} on a "
                                           "side")
        try:
            image.seek(0)
            return image.convert("RGB")
        except Exception:  # noqa: BLE001
            raise uploads.UploadError(400, "corrupt or truncated GIF image: its pixels cannot be decoded") from None


def verify_upload(data: bytes) -> dict:
    """Upload bytes -> provenance.verify's report. Raises uploads.UploadError (400, 413, 415) for what it refuses."""
    if is_gif(data):
        image = decode_gif(data)
    else:
        try:
            image = Image.fromarray(uploads.decode_image(data), "RGB")
        except uploads.UploadError as error:
            if error.status == 415:  # name GIF among the accepted types
                raise uploads.UploadError(415, error.message.replace("JPEG, PNG or WebP", "JPEG, PNG, WebP or GIF"),
                                          allowed=ACCEPTED) from None
            raise
    return provenance.verify(data, image=image)
