"""app.uploads: every image here is made in the test (Pillow, or PNG chunks written by hand for what Pillow cannot
write: 16-bit RGB and decompression bombs)."""

import io
import struct
import tempfile

import numpy as np
import pytest
from flask import Flask
from PIL import Image, ImageFile
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from app import uploads
from app.errors import ApiError, register_error_handlers
from app.uploads import UploadError, decode_image, read_upload
from tests.images import encode, raw_png


def refused(data: bytes, status: int, words: str, **limits) -> UploadError:
    with pytest.raises(UploadError) as caught:
        decode_image(data, **limits)
    assert caught.value.status == status, caught.value.message
    assert words in caught.value.message
    return caught.value


def gradient(width: int = 96, height: int = 64) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2), "RGB")


# --- accepted formats -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, options, tolerance", [
    ("JPEG", {"quality": 95}, 12), ("PNG", {}, 0), ("WEBP", {"lossless": True}, 0), ("WEBP", {"quality": 90}, 20),
])
def test_jpeg_png_and_webp_decode_to_uint8_rgb(fmt, options, tolerance):
    image = gradient()
    pixels = decode_image(encode(image, fmt, **options))
    assert pixels.shape == (64, 96, 3) and pixels.dtype == np.uint8 and pixels.flags.writeable
    assert np.abs(pixels.astype(int) - np.asarray(image, dtype=int)).max() <= tolerance


# --- size limits ------------------------------------------------------------------------------------------------------

def test_an_oversized_body_is_refused_with_413_before_decoding():
    assert uploads.MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    refused(b"\xff\xd8\xff" + bytes(uploads.MAX_UPLOAD_BYTES), 413, "larger than 10485760 bytes")
    noise = np.random.default_rng(3).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    small_png = encode(Image.fromarray(noise), "PNG")
    assert len(small_png) > 1000
    refused(small_png, 413, "larger than 1000 bytes", max_bytes=1000)
    assert decode_image(small_png, max_bytes=len(small_png)).shape == (40, 40, 3)


def test_a_decompression_bomb_is_refused_with_413_from_its_header():
    bomb = raw_png(30_000, 30_000, bytes(3750))  # 900 megapixels of 1-bit black in about 100 kB
    assert len(bomb) < 200_000
    refused(bomb, 413, "pixels")
    just_over = raw_png(4001, 4000, bytes(501))  # past our 16 MP for a PNG (decoded whole), under Pillow's limits
    refused(just_over, 413, "4001x4000 pixels, more than 16000000 in all (PNG is decoded whole")
    refused(raw_png(12_000, 40, bytes(12_000), bit_depth=8), 413, "more than 10000 on a side")
    refused(encode(gradient(), "PNG"), 413, "more than 1000 in all", max_pixels=1000)  # limits are arguments


def test_an_image_too_small_to_hold_a_face_is_refused_with_400():
    refused(encode(gradient(20, 200), "PNG"), 400, "20x200 pixels, less than 32 on a side")


# --- not images, unsupported types ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    b"Dear visitor,\nthis is a text file, not a portrait.\n" * 20,
    b"<svg xmlns='http://www.w3.org/2000/svg'><circle r='40'/></svg>",
])
def test_bytes_that_are_not_an_image_are_refused_with_415(data):
    error = refused(data, 415, "not a JPEG, PNG or WebP image")
    assert error.allowed == ["image/jpeg", "image/png", "image/webp"]


@pytest.mark.parametrize("fmt, name", [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_gif_bmp_and_tiff_are_refused_with_415_by_name(fmt, name):
    refused(encode(gradient(), fmt), 415, f"{name} images are not accepted")


def test_heic_is_refused_with_415_by_name():
    refused(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100), 415, "HEIC images are not accepted")


def test_an_empty_upload_is_refused_with_400():
    refused(b"", 400, "empty upload")


# --- truncated and corrupt --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_truncated_file_is_refused_with_400(fmt):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    noise = np.random.default_rng(1).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    refused(data[: len(data) * 6 // 10], 400, "corrupt or truncated" if fmt != "WEBP" else "corrupt")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_a_corrupt_header_is_refused_with_400():
    refused(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, 400, "corrupt PNG image: its header cannot be read")


def test_refusals_log_nothing(caplog):
    with caplog.at_level("DEBUG"):
        for data in (b"\x89PNG\r\n\x1a\nbad", b"plain text", encode(gradient(), "GIF")):
            with pytest.raises(UploadError):
                decode_image(data)
    assert caplog.records == []


# --- animation, pixel formats, orientation ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])  # APNG and animated WebP
def test_an_animated_image_gives_its_first_frame(fmt):
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((220, 20, 20), (20, 220, 20), (20, 20, 220))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3, "the test image is really animated"
    pixels = decode_image(data)
    assert pixels.shape == (48, 64, 3)
    assert np.abs(pixels.astype(int) - [220, 20, 20]).max() <= 2


def test_cmyk_jpeg_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    data = encode(cmyk, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
    assert np.abs(decode_image(data).astype(int) - [255, 0, 0]).max() <= 8


def test_greyscale_and_bilevel_are_expanded_to_rgb():
    grey = Image.fromarray(np.linspace(0, 255, 64 * 64).astype(np.uint8).reshape(64, 64), "L")
    for data in (encode(grey, "PNG"), encode(grey, "JPEG", quality=95), encode(grey.convert("1"), "PNG")):
        pixels = decode_image(data)
        assert pixels.shape == (64, 64, 3)
        assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    np.testing.assert_array_equal(decode_image(encode(grey, "PNG"))[..., 0], np.asarray(grey))


def test_16_bit_greyscale_png_keeps_its_range():
    values = np.array([0, 1000, 32896, 65535], dtype=np.uint16).repeat(16)[None, :].repeat(40, axis=0)
    data = encode(Image.frombytes("I;16", (64, 40), values.astype("<u2").tobytes()), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I") and data[24] == 16, "a real 16-bit PNG"
    row = decode_image(data)[0, ::16, 0]
    assert row.tolist() == [0, 4, 128, 255]  # scaled, not clipped (1000 would clip to 255)


def test_16_bit_rgb_png_keeps_the_high_byte():
    row = struct.pack(">HHH", 0xFF00, 0x8000, 0x0100) * 40
    data = raw_png(40, 40, row, bit_depth=16, colour_type=2)
    assert np.abs(decode_image(data)[5, 5].astype(int) - [255, 128, 1]).max() <= 1


def test_palette_png_with_and_without_transparency():
    indices = np.zeros((40, 40), np.uint8)
    indices[:, 20:] = 1
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([10, 20, 200, 250, 120, 0] + [0] * 762)
    plain = decode_image(encode(palette_image, "PNG"))
    assert plain[0, 0].tolist() == [10, 20, 200] and plain[0, 39].tolist() == [250, 120, 0]
    see_through = decode_image(encode(palette_image, "PNG", transparency=0))
    assert see_through[0, 0].tolist() == list(uploads.BACKGROUND) and see_through[0, 39].tolist() == [250, 120, 0]


@pytest.mark.parametrize("mode, fmt", [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP")])
def test_alpha_is_composited_on_white(mode, fmt):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[:, :20] = (0, 0, 0, 0)  # transparent: white
    rgba[:, 20:40] = (40, 40, 40, 255)  # opaque: itself
    rgba[:, 40:] = (0, 0, 0, 128)  # half: half way to white
    image = Image.fromarray(rgba, "RGBA").convert(mode)
    pixels = decode_image(encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert pixels.shape == (40, 60, 3)
    assert (pixels[:, :20] == 255).all()
    assert (pixels[:, 20:40] == 40).all()
    assert np.abs(pixels[:, 40:].astype(int) - 127).max() <= 1


def test_exif_orientation_is_applied():
    stored = np.zeros((64, 96, 3), np.uint8)
    stored[:] = (0, 0, 255)
    stored[:16, :16] = (255, 0, 0)  # a red mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the camera was turned; show the stored image rotated 90 degrees clockwise
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    pixels = decode_image(data)
    assert pixels.shape == (96, 64, 3), "width and height swapped"
    assert pixels[4, -5, 0] > 200 and pixels[4, -5, 2] < 60, "the red mark is now top-right"
    assert pixels[4, 4, 2] > 200 and pixels[4, 4, 0] < 60, "and blue is top-left"
    upright = decode_image(encode(Image.fromarray(stored), "JPEG", quality=95))
    assert upright.shape == (64, 96, 3) and upright[4, 4, 0] > 200


# --- reading the request ----------------------------------------------------------------------------------------------

def request_for(data: bytes = b"", content_type: str = "image/png", **builder) -> Request:
    return Request(EnvironBuilder(method="POST", data=data, content_type=content_type, **builder).get_environ())


def test_read_upload_takes_a_raw_body_with_its_image_type():
    png = encode(gradient(), "PNG")
    for content_type in ("image/png", "image/jpeg", "image/webp"):  # the type only says "raw": bytes are judged
        assert read_upload(request_for(png, content_type)) == png


def test_read_upload_takes_a_multipart_field_without_touching_disk(monkeypatch):
    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was spooled to a temporary file")

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_disk)
    noise = np.random.default_rng(2).integers(0, 256, size=(700, 900, 3), dtype=np.uint8)
    png = encode(Image.fromarray(noise), "PNG")
    assert len(png) > 1_000_000  # far past werkzeug's 500 kB in-memory threshold
    request = Request(EnvironBuilder(method="POST", data={"image": (io.BytesIO(png), "me.png", "image/png"),
                                                          "note": "hello"}).get_environ())
    assert read_upload(request) == png
    assert decode_image(read_upload(request_for(png))).shape == (700, 900, 3)


def test_read_upload_refuses_oversized_bodies_with_413():
    body = bytes(5000)
    with pytest.raises(UploadError) as caught:  # by Content-Length, before reading
        read_upload(request_for(body), max_bytes=4000)
    assert caught.value.status == 413
    environ = EnvironBuilder(method="POST", data=body, content_type="image/png").get_environ()
    del environ["CONTENT_LENGTH"]  # chunked: no length announced, so the limit holds while reading
    environ["wsgi.input_terminated"] = True
    with pytest.raises(UploadError) as caught:
        read_upload(Request(environ), max_bytes=4000)
    assert caught.value.status == 413
    multipart = Request(EnvironBuilder(method="POST", data={"image": (io.BytesIO(body), "a.png")}).get_environ())
    with pytest.raises(UploadError) as caught:
        read_upload(multipart, max_bytes=4000)
    assert caught.value.status == 413


@pytest.mark.parametrize("content_type, data, status, words", [
    ("text/plain", b"hello", 415, "Content-Type 'text/plain' is not accepted"),
    ("application/x-www-form-urlencoded", b"image=abc", 415, "is not accepted"),
    ("multipart/form-data", b"--x\r\n", 400, "malformed multipart"),  # no boundary parameter
])
def test_read_upload_refuses_other_content_types_and_bad_multipart(content_type, data, status, words):
    with pytest.raises(UploadError) as caught:
        read_upload(request_for(data, content_type))
    assert caught.value.status == status and words in caught.value.message


def test_read_upload_names_a_missing_field():
    request = Request(EnvironBuilder(method="POST", data={"photo": (io.BytesIO(b"x"), "a.png")}).get_environ())
    with pytest.raises(UploadError, match="no file field named 'image'") as caught:
        read_upload(request)
    assert caught.value.status == 400


def test_an_upload_error_answers_as_json_with_its_status():
    assert issubclass(UploadError, ApiError)
    app = Flask(__name__)
    register_error_handlers(app)

    @app.post("/upload")
    def upload():
        from flask import request

        decode_image(read_upload(request))
        return "ok"

    client = app.test_client()
    response = client.post("/upload", data=encode(gradient(), "GIF"), content_type="image/png")
    assert response.status_code == 415
    assert response.get_json() == {"error": "GIF images are not accepted; send JPEG, PNG or WebP",
                                   "allowed": ["image/jpeg", "image/png", "image/webp"]}
    assert client.post("/upload", data=encode(gradient(), "PNG"), content_type="image/png").data == b"ok"
