"""Uploaded portraits: POST /api/encode and /api/edit against a tiny model exported WITH an encoder by the project's
own export code (tests/conftest.py's 'tiny-enc', beside 'tiny', which has none), with real CelebA-HQ photos read at
test time from the shared data folder (never copied into the repository).

Through create_app() (Flask's test client): what the encoder finds, the edit's semantics and headers, views and
sizes, determinism, the batchers and the cache, and every class of bad upload answered as a 4xx JSON naming the
problem (never a 500). Through the real gunicorn TLS entrypoint (the image's CMD from a clean requirements.txt venv,
as tests/test_deploy.py's smoke test): a real photo gets a face, the byte limit (413) and the upload timeout (408)
hold there too, and the server's log holds none of the photo's bytes.
"""

import base64
import io
import json
import socket
import ssl
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.conftest import (ENCODER_ATTRIBUTES, ENCODER_MODEL, TINY_MODEL, TINY_RESOLUTION, call_together,
                            fuzz_for_server_errors)
from tests.images import PNG_MAGIC, encode, raw_png, rgb_of
# The smoke test's fixtures: the clean requirements.txt venv, the image's files, a trustme CA.
from tests.image_server import image_root, serving_image, smoke_venv, tls_ca, verified_context  # noqa: F401

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # app/uploads.py's limit, restated: the test pins the documented value


# --- helpers -------------------------------------------------------------------------------------------------------

def photo_image(celeba_photo, number: int = 0) -> Image.Image:
    return Image.fromarray(rgb_of(celeba_photo(number)))


def post(client, path: str, data: bytes, content_type: str = "image/jpeg", multipart: bool = False):
    if multipart:
        return client.post(path, data={"image": (io.BytesIO(data), "portrait.jpg", content_type)},
                           content_type="multipart/form-data")
    return client.post(path, data=data, content_type=content_type)


def ok(response, mimetype: str = "image/png"):
    assert response.status_code == 200, (response.status_code, response.data[:300])
    assert response.mimetype == mimetype
    assert response.headers["Cache-Control"] == "no-store"
    return response


def refused(response, status: int, words: str):
    """A 4xx JSON naming the problem, never cached."""
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json" and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert words in body["error"], body
    return body


def encoded_probabilities(header: str) -> dict[str, float]:
    return {name: float(value) for name, value in (item.split("=") for item in header.split(","))}


# --- what the models can do ----------------------------------------------------------------------------------------

def test_models_and_readyz_say_which_models_can_encode(encoder_client):
    listing = encoder_client.get("/api/models").get_json()
    assert listing["encoders"] == [ENCODER_MODEL]
    models = {m["name"]: m for m in listing["models"]}
    assert models[ENCODER_MODEL]["can_encode"] is True and models[TINY_MODEL]["can_encode"] is False
    # The gallery's method picker offers what the model serves, the default chosen.
    assert models[ENCODER_MODEL]["edit_methods"] == ["photo", "generator", "pti", "pti-photo"]
    assert models[ENCODER_MODEL]["edit_method"] == "pti-photo"
    assert models[TINY_MODEL]["edit_methods"] == [] and models[TINY_MODEL]["edit_method"] is None
    framing = models[ENCODER_MODEL]["manifest"]["encoder"]["framing"]
    assert framing["size"] == TINY_RESOLUTION and len(framing["landmarks"]) == 5
    ready = encoder_client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["encoders"] == [ENCODER_MODEL]


def test_the_detector_is_warm_once_the_app_is_ready(encoder_app):
    from facegen import framing

    assert framing._detector is not None, "create_app() builds the face detector when a model can encode"


def test_a_model_without_an_encoder_is_refused_naming_the_ones_with_one(encoder_client, celeba_photo):
    for path in ("/api/encode", "/api/edit"):
        body = refused(post(encoder_client, f"{path}?model={TINY_MODEL}", celeba_photo()), 400,
                       f"model '{TINY_MODEL}' cannot encode photos: its export has no encoder")
        assert body["allowed"] == [ENCODER_MODEL] and ENCODER_MODEL in body["error"]


@pytest.mark.parametrize("change, words", [
    ("graft", "has no 'encode' function, but its manifest has an encoder object"),
    ("template", "encoder framing landmarks"),
    ("size", "encoder input must be"),
])
def test_a_broken_encoder_stops_the_service_at_startup(encoder_models_dir, tmp_path, change, words):
    """A manifest that promises an encoder the folder does not keep: ModelError naming the folder and the problem."""
    import shutil

    from app import ModelError, create_app

    models = tmp_path / "models"
    if change == "graft":  # a model without encode() given another model's encoder object
        shutil.copytree(encoder_models_dir / TINY_MODEL, models / TINY_MODEL)
        donor = json.loads((encoder_models_dir / ENCODER_MODEL / "manifest.json").read_text())["encoder"]
        target = models / TINY_MODEL
    else:
        shutil.copytree(encoder_models_dir / ENCODER_MODEL, models / ENCODER_MODEL)
        target = models / ENCODER_MODEL
    manifest = json.loads((target / "manifest.json").read_text())
    if change == "graft":
        donor["output"]["attrs"] = [None, len(manifest["attributes"])]  # the contract's check passes: 3 attributes
        manifest["encoder"] = donor
    elif change == "template":
        manifest["encoder"]["framing"]["landmarks"][1] = manifest["encoder"]["framing"]["landmarks"][0]
    else:
        manifest["encoder"]["input"] = [None, 64, 64, 3]
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=words) as raised:
        create_app({"FACEGEN_MODELS_DIR": str(models)})
    assert str(target) in str(raised.value)


# --- /api/encode ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_encode_finds_the_face_and_its_attributes(encoder_client, celeba_photo):
    response = ok(post(encoder_client, "/api/encode", celeba_photo()), "application/json")
    body = response.get_json()
    assert body["model"] == ENCODER_MODEL and body["threshold"] == 0.5
    assert list(body["attributes"]) == list(ENCODER_ATTRIBUTES)
    assert all(0.0 <= p <= 1.0 for p in body["attributes"].values())
    expected_found = ",".join(("" if p >= 0.5 else "-") + n for n, p in body["attributes"].items())
    assert body["found"] == expected_found
    assert body["image"] == {"width": 128, "height": 128} and body["framing"] == {"size": TINY_RESOLUTION}
    assert body["faces_found"] >= 1
    x0, y0, x1, y1 = body["face"]["box"]
    assert 0 <= x0 < x1 <= 128.5 and 0 <= y0 < y1 <= 128.5 and (x1 - x0) > 40
    marks = body["face"]["landmarks"]
    assert list(marks) == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    assert marks["left_eye"][0] < marks["right_eye"][0] and marks["left_eye"][1] < marks["mouth_left"][1]
    assert 0.8 <= body["face"]["score"] <= 1.0
    # The same photo as a multipart field: the same answer.
    assert ok(post(encoder_client, "/api/encode", celeba_photo(), multipart=True),
              "application/json").get_json() == body


# --- /api/edit -----------------------------------------------------------------------------------------------------

def test_edit_returns_the_edited_face_with_what_the_encoder_found(encoder_client, celeba_photo):
    found = post(encoder_client, "/api/encode", celeba_photo()).get_json()
    response = ok(post(encoder_client, "/api/edit?attrs=Smiling,-Eyeglasses", celeba_photo()))
    assert response.data.startswith(PNG_MAGIC)
    assert rgb_of(response.data).shape == (TINY_RESOLUTION, TINY_RESOLUTION, 3)
    assert encoded_probabilities(response.headers["X-Encoded-Attributes"]) == found["attributes"]
    assert response.headers["X-Attributes-Found"] == found["found"]
    # Named attributes on or off, every other one as found.
    expected = [("Smiling" if n == "Smiling" else "-Eyeglasses" if n == "Eyeglasses" else
                 ("" if found["attributes"][n] >= 0.5 else "-") + n) for n in ENCODER_ATTRIBUTES]
    assert response.headers["X-Attributes-Explicit"] == ",".join(expected)
    assert response.headers["X-Attributes"] == ",".join(e for e in expected if not e.startswith("-"))
    assert int(response.headers["X-Faces-Found"]) == found["faces_found"]
    assert [float(v) for v in response.headers["X-Face-Box"].split(",")] == found["face"]["box"]
    assert "ETag" not in response.headers


@pytest.mark.slow
def test_same_photo_and_query_same_bytes(encoder_client, celeba_photo):
    photo = celeba_photo(1)
    first = ok(post(encoder_client, "/api/edit?attrs=Male&view=strip&size=64", photo)).data
    assert ok(post(encoder_client, "/api/edit?attrs=male&view=strip&size=64", photo, multipart=True)).data == first
    assert ok(post(encoder_client, "/api/edit?size=64&view=strip&attrs=MALE", photo)).data == first
    # Another photo, another face.
    assert ok(post(encoder_client, "/api/edit?attrs=Male&view=strip&size=64", celeba_photo(2))).data != first


@pytest.mark.slow
def test_attributes_reach_the_generator_and_no_change_is_the_photo_itself(encoder_client, celeba_photo):
    photo = celeba_photo(3)
    rebuilt = ok(post(encoder_client, "/api/edit?view=rebuilt&method=generator", photo))
    framed = ok(post(encoder_client, "/api/edit?view=framed", photo)).data
    found = rebuilt.headers["X-Attributes-Found"]
    # No attrs, an empty attrs, or attrs naming exactly what was found: the framed photo itself (the default,
    # pti-photo, and photo add only what the generator changes), the rebuilt face with method=generator.
    for query in ("", "attrs=", f"attrs={found}"):
        edited = ok(post(encoder_client, "/api/edit?" + query, photo))
        assert edited.data == framed, query
        assert ok(post(encoder_client, f"/api/edit?method=photo&{query}", photo)).data == framed, query
        assert edited.headers["X-Attributes-Explicit"] == found
        assert ok(post(encoder_client, f"/api/edit?method=generator&{query}", photo)).data == rebuilt.data, query
    # Each attribute flipped from its found state changes the face.
    faces = {framed}
    for name, state in zip(ENCODER_ATTRIBUTES, found.split(",")):
        flipped = name if state.startswith("-") else "-" + name
        edited = ok(post(encoder_client, f"/api/edit?attrs={flipped}", photo))
        assert edited.headers["X-Attributes-Explicit"].split(",") == [
            flipped if s.lstrip("-") == name else s for s in found.split(",")]
        faces.add(edited.data)
    assert len(faces) == len(ENCODER_ATTRIBUTES) + 1


@pytest.mark.slow
def test_views_sizes_and_the_strip(encoder_client, celeba_photo):
    from facegen import framing

    photo = celeba_photo(0)
    first = post(encoder_client, "/api/encode", photo).get_json()["found"].split(",")[0]
    flip = first[1:] if first.startswith("-") else "-" + first  # an edit that changes something
    # 64 px: under the invisible watermark's smallest side (facegen/watermark.py), which would mark the strip and
    # each face differently.
    views = {view: rgb_of(ok(post(encoder_client, f"/api/edit?attrs={flip}&size=64&view={view}", photo)).data)
             for view in ("framed", "rebuilt", "edited", "strip")}
    for view in ("framed", "rebuilt", "edited"):
        assert views[view].shape == (64, 64, 3), view
    assert views["strip"].shape == (64, 3 * 64, 3)
    np.testing.assert_array_equal(views["strip"], np.concatenate([views["framed"], views["rebuilt"],
                                                                  views["edited"]], axis=1))
    assert not np.array_equal(views["rebuilt"], views["edited"])
    # The framed view is the photo's largest face warped onto the manifest's template at the model's resolution
    # (then enlarged): the same pixels facegen.framing makes of it directly.
    pixels = rgb_of(photo)
    face = framing.largest_face(pixels)
    manifest = json.loads((encoder_client.application.extensions["facegen"].get(ENCODER_MODEL).path
                           / "manifest.json").read_text())
    direct = framing.frame_face(pixels, face.landmarks, manifest["encoder"]["framing"]["landmarks"],
                                TINY_RESOLUTION)
    native = rgb_of(ok(post(encoder_client, "/api/edit?view=framed", photo)).data)
    np.testing.assert_array_equal(native, direct)
    # The framed face is a face: the detector finds it again, landmarks near the template.
    again = framing.largest_face(np.asarray(Image.fromarray(direct).resize((128, 128), Image.Resampling.LANCZOS)))
    template = np.asarray(manifest["encoder"]["framing"]["landmarks"])
    assert np.abs(again.landmarks / 128 - template).max() < 0.06
    for size in (64, 256, 512):
        assert rgb_of(ok(post(encoder_client, f"/api/edit?size={size}", photo)).data).shape == (size, size, 3)


@pytest.mark.slow
def test_format_json_holds_every_view_and_the_findings(encoder_client, celeba_photo):
    photo = celeba_photo(4)
    response = ok(post(encoder_client, "/api/edit?attrs=-Male&size=64&format=json", photo), "application/json")
    body = response.get_json()
    assert body["model"] == ENCODER_MODEL and body["size"] == 64
    assert body["attrs"] == response.headers["X-Attributes-Explicit"] and "-Male" in body["attrs"].split(",")
    assert body["found"] == response.headers["X-Attributes-Found"]
    encoded = post(encoder_client, "/api/encode", photo).get_json()
    assert {k: body[k] for k in encoded} == encoded
    for view in ("framed", "rebuilt", "edited"):
        prefix = "data:image/png;base64,"
        assert body["images"][view].startswith(prefix)
        png = base64.b64decode(body["images"][view][len(prefix):])
        assert png == ok(post(encoder_client, f"/api/edit?attrs=-Male&size=64&view={view}", photo)).data, view
    refused(post(encoder_client, "/api/edit?format=json&view=strip", photo), 400, "view applies to format=png")


@pytest.mark.parametrize("query, status, words", [
    ("attrs=Wings", 400, "unknown attribute 'Wings'"),
    ("attrs=Male,-Male", 400, "both on and off"),
    (f"attrs=Young&model={TINY_MODEL}", 400, "cannot encode photos"),
    ("size=100", 400, "size must be one of"),
    ("view=side", 400, "view must be one of"),
    ("method=gan", 400, "method must be one of"),
    ("format=gif", 400, "format must be one of"),
    ("atrs=Male", 400, "unknown query parameter 'atrs'"),
    ("model=nobody", 404, "unknown model 'nobody'"),
    ("model=../etc", 400, "is not a model name"),
])
def test_bad_queries_are_refused_before_the_photo_is_read(encoder_client, celeba_photo, query, status, words):
    refused(post(encoder_client, f"/api/edit?{query}", celeba_photo()), status, words)


# --- the batchers, the cache and the logs ----------------------------------------------------------------------------

def test_uploads_go_through_the_batchers_and_nothing_is_cached(encoder_app, encoder_client, celeba_photo, caplog):
    renderer = encoder_app.extensions["facegen_renderer"]
    encoder, generator = renderer.encoders[ENCODER_MODEL], renderer.batchers[ENCODER_MODEL]
    entries, cached_bytes = len(renderer.cache), renderer.cache.bytes
    encoded, generated = encoder.batches, generator.batches
    with caplog.at_level("DEBUG"):
        ok(post(encoder_client, "/api/edit?attrs=Smiling&method=photo", celeba_photo(5)))
        ok(post(encoder_client, "/api/encode", celeba_photo(5)), "application/json")
        ok(post(encoder_client, "/api/edit?attrs=Smiling", celeba_photo(5)))  # the default: pti-photo
    assert encoder.batches == encoded + 3 and generator.batches > generated
    assert len(renderer.cache) == entries and renderer.cache.bytes == cached_bytes, "an edit entered the PNG cache"
    photo = celeba_photo(5)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for start in range(100, len(photo) - 32, 500):  # no piece of the photo, raw or base64, in any log record
        piece = photo[start:start + 24]
        assert piece.decode("latin-1") not in logged and base64.b64encode(piece).decode()[:24] not in logged
    metrics = encoder_client.get("/metrics").get_data(as_text=True)
    assert f'facegen_photos_encoded_total{{model="{ENCODER_MODEL}"}}' in metrics
    assert "facegen_encode_batch_size_bucket" in metrics
    assert 'facegen_http_requests_total{endpoint="/api/edit",method="POST",status="200"}' in metrics


@pytest.mark.slow
def test_concurrent_photos_share_encoder_calls_and_keep_their_results(encoder_app, celeba_photo):
    """The EncodeBatcher batches concurrent framed photos; each photo's result is what it gets alone."""
    from app.batcher import EncodeBatcher
    from facegen import framing

    model = encoder_app.extensions["facegen"].get(ENCODER_MODEL)
    photos = []
    for number in range(6):
        pixels = rgb_of(celeba_photo(number))
        photos.append(framing.frame_face(pixels, framing.largest_face(pixels).landmarks, model.encoder.template,
                                         model.encoder.size))
    alone = [model.encode(photo[None]) for photo in photos]
    batcher = EncodeBatcher(model, max_batch=8, wait_ms=200, queue_size=16)
    together = call_together(batcher.result, photos)
    assert batcher.largest_batch > 1 and batcher.batches < len(photos)
    for (noise, probabilities), (single_noise, single_probabilities) in zip(together, alone):
        np.testing.assert_allclose(noise, single_noise[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(probabilities, single_probabilities[0], rtol=0, atol=1e-6)


# --- bad uploads, each class through the route ---------------------------------------------------------------------

def test_over_the_byte_limit_is_413(encoder_client):
    body = b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES)  # a JPEG signature, one byte too many
    refused(post(encoder_client, "/api/edit", body), 413, f"larger than {MAX_UPLOAD_BYTES} bytes")
    refused(post(encoder_client, "/api/encode", body, multipart=True), 413, "larger than")


@pytest.mark.parametrize("content_type, data, words", [
    ("text/plain", b"hello", "Content-Type 'text/plain' is not accepted"),
    ("application/octet-stream", b"\xff\xd8\xff\xe0", "is not accepted"),
    ("image/png", b"plain text, not an image", "not a JPEG, PNG or WebP image"),
    ("image/jpeg", encode(Image.new("RGB", (64, 64), (9, 9, 9)), "GIF"), "GIF images are not accepted"),
    ("image/png", encode(Image.new("RGB", (64, 64), (9, 9, 9)), "BMP"), "BMP images are not accepted"),
    ("image/png", encode(Image.new("RGB", (64, 64), (9, 9, 9)), "TIFF"), "TIFF images are not accepted"),
])
def test_not_an_image_or_an_unsupported_type_is_415(encoder_client, content_type, data, words):
    for path in ("/api/edit", "/api/encode"):
        body = refused(post(encoder_client, path, data, content_type), 415, words)
        assert "image/jpeg" in body["allowed"]


def test_a_decompression_bomb_and_absurd_dimensions_are_413_and_tiny_ones_400(encoder_client):
    bomb = raw_png(30_000, 30_000, bytes(3750))  # 900 megapixels in about 100 kB
    assert len(bomb) < 200_000
    refused(post(encoder_client, "/api/edit", bomb, "image/png"), 413, "pixels")
    refused(post(encoder_client, "/api/edit", raw_png(4001, 4000, bytes(501)), "image/png"), 413,
            "4001x4000 pixels, more than 16000000 in all")
    refused(post(encoder_client, "/api/edit", raw_png(12_000, 40, bytes(1500)), "image/png"), 413,
            "more than 10000 on a side")
    refused(post(encoder_client, "/api/edit", encode(Image.new("RGB", (16, 16)), "PNG"), "image/png"), 400,
            "less than 32 on a side")


def test_truncated_empty_and_malformed_uploads_are_400(encoder_client, celeba_photo):
    photo = celeba_photo()
    refused(post(encoder_client, "/api/edit", photo[:len(photo) // 2]), 400, "corrupt or truncated JPEG")
    refused(post(encoder_client, "/api/edit", PNG_MAGIC + b"\x00" * 40, "image/png"), 400, "corrupt PNG")
    refused(post(encoder_client, "/api/edit", b"", "image/jpeg"), 400, "empty upload")
    refused(encoder_client.post("/api/edit", data={"photo": (io.BytesIO(photo), "a.jpg")},
                                content_type="multipart/form-data"), 400, "no file field named 'image'")
    refused(encoder_client.post("/api/edit", data=b"--x\r\n", content_type="multipart/form-data"), 400,
            "malformed multipart")


def test_a_body_cut_short_of_its_length_is_400(encoder_app, celeba_photo):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Response

    photo = celeba_photo()
    environ = EnvironBuilder(path="/api/edit", method="POST", data=photo[:1000],
                             content_type="image/jpeg").get_environ()
    environ["CONTENT_LENGTH"] = str(len(photo))  # announces more than it sends, as a client that went away
    response = Response.from_app(encoder_app.wsgi_app, environ)
    assert response.status_code == 400 and response.headers["Cache-Control"] == "no-store"
    assert "the upload was cut off" in json.loads(response.get_data())["error"]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])  # APNG and animated WebP
def test_an_animated_image_is_edited_from_its_first_frame(encoder_client, celeba_photo, fmt):
    face = photo_image(celeba_photo, 0)
    grey = Image.new("RGB", face.size, (128, 128, 128))
    options = {"save_all": True, "duration": 100, "loop": 0, "lossless": True}
    first_is_face = encode(face, fmt, append_images=[grey], **options)
    with Image.open(io.BytesIO(first_is_face)) as check:
        assert check.n_frames == 2, "the test image is really animated"
    still = ok(post(encoder_client, "/api/edit?view=framed", encode(face, "PNG"), "image/png")).data
    animated = ok(post(encoder_client, "/api/edit?view=framed", first_is_face, f"image/{fmt.lower()}")).data
    assert animated == still
    # A face only in the second frame is not used: the first frame has none.
    last_is_face = encode(grey, fmt, append_images=[face], **options)
    refused(post(encoder_client, "/api/edit", last_is_face, f"image/{fmt.lower()}"), 422, "no face found")


@pytest.mark.slow
def test_cmyk_greyscale_16_bit_and_alpha_are_converted(encoder_client, celeba_photo):
    face = photo_image(celeba_photo, 1)
    grey = face.convert("L")
    sixteen = Image.frombytes("I;16", grey.size, (np.asarray(grey, np.uint16) * 257).astype("<u2").tobytes())
    rgba = face.convert("RGBA")
    alpha = np.full(face.size[::-1], 255, np.uint8)
    alpha[:, :6] = 0  # a transparent strip on the left: composited on white
    rgba.putalpha(Image.fromarray(alpha))
    uploads = {"cmyk": (encode(face.convert("CMYK"), "JPEG", quality=95), "image/jpeg"),
               "grey": (encode(grey, "PNG"), "image/png"),
               "16-bit": (encode(sixteen, "PNG"), "image/png"),
               "alpha": (encode(rgba, "PNG"), "image/png"),
               "alpha-webp": (encode(rgba, "WEBP", lossless=True), "image/webp")}
    with Image.open(io.BytesIO(uploads["16-bit"][0])) as check:
        assert check.mode.startswith("I") and uploads["16-bit"][0][24] == 16, "a real 16-bit PNG"
    framed = {}
    for name, (data, content_type) in uploads.items():
        response = ok(post(encoder_client, "/api/edit?view=framed", data, content_type))
        framed[name] = rgb_of(response.data)
        assert int(response.headers["X-Faces-Found"]) >= 1, name
    # 16-bit samples scaled to 8 bits are the 8-bit greyscale photo exactly; grey stays grey.
    np.testing.assert_array_equal(framed["16-bit"], framed["grey"])
    assert (framed["grey"][..., 0] == framed["grey"][..., 2]).all()


@pytest.mark.slow
def test_exif_orientation_is_honoured(encoder_client, celeba_photo):
    face = photo_image(celeba_photo, 2)
    upright = Image.new("RGB", (128, 192), (200, 200, 200))
    upright.paste(face, (0, 32))  # a portrait: 128 wide, 192 high
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # the camera's sensor: lying on its side, 192 x 128
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: show the stored image turned 90 degrees clockwise
    turned = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    plain = encode(upright, "JPEG", quality=95)
    found = ok(post(encoder_client, "/api/encode", turned), "application/json").get_json()
    reference = ok(post(encoder_client, "/api/encode", plain), "application/json").get_json()
    assert found["image"] == {"width": 128, "height": 192}, "width and height as the photo is shown"
    assert np.abs(np.subtract(found["face"]["box"], reference["face"]["box"])).max() < 4
    edited = rgb_of(ok(post(encoder_client, "/api/edit?view=framed", turned)).data).astype(int)
    straight = rgb_of(ok(post(encoder_client, "/api/edit?view=framed", plain)).data).astype(int)
    assert np.abs(edited - straight).mean() < 6


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_face_is_422_saying_so(encoder_client, kind):
    rng = np.random.default_rng(1)
    pixels = (np.full((160, 200, 3), 150, np.uint8) if kind == "flat"
              else rng.integers(0, 256, size=(160, 200, 3), dtype=np.uint8))
    for path in ("/api/edit", "/api/encode"):
        body = refused(post(encoder_client, path, encode(Image.fromarray(pixels), "PNG"), "image/png"), 422,
                       "no face found in the photo")
        assert "upright" in body["error"]


@pytest.mark.slow
def test_several_faces_the_largest_is_edited(encoder_client, celeba_photo):
    big = photo_image(celeba_photo, 1).resize((300, 300), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (460, 320), (200, 200, 200))
    canvas.paste(big, (140, 10))  # the big face on the right, so the order is not simply left to right
    canvas.paste(photo_image(celeba_photo, 2), (5, 100))
    response = ok(post(encoder_client, "/api/edit", encode(canvas, "PNG"), "image/png"))
    assert int(response.headers["X-Faces-Found"]) >= 2
    x0, y0, x1, y1 = (float(v) for v in response.headers["X-Face-Box"].split(","))
    assert x0 >= 130 and x1 <= 450 and (x1 - x0) > 150, "the box is the big face's"
    alone = post(encoder_client, "/api/encode", encode(big, "PNG"), "image/png").get_json()
    assert np.abs(np.subtract([x0, y0, x1, y1], np.add(alone["face"]["box"], [140, 10, 140, 10]))).max() < 6


@pytest.mark.slow
def test_fuzzed_uploads_never_get_a_5xx(encoder_app):
    """schemathesis draws queries and bodies (raw and multipart) for both upload operations from /openapi.json."""
    import schemathesis

    schema = schemathesis.openapi.from_wsgi("/openapi.json", encoder_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.method.upper() == "POST" and op.path != "/api/verify"]
    assert {op.path for op in operations} == {"/api/encode", "/api/edit"}  # /api/verify: tests/test_provenance.py
    cases, server_errors = fuzz_for_server_errors(operations, max_examples=60)
    assert not server_errors, server_errors[:10]
    assert cases >= 20


# --- through the real gunicorn TLS entrypoint -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def served_encoder(smoke_venv, image_root, encoder_models_dir, tls_ca, verified_context, tmp_path_factory):
    """The image's CMD (gunicorn -c gunicorn.conf.py, HTTPS) from the image's files and a clean requirements.txt
    venv, serving the encoder models; uploads must arrive within 3 s."""
    with serving_image(smoke_venv, image_root, tls_ca, verified_context, tmp_path_factory.mktemp("served-encoder"),
                       {"FACEGEN_MODELS_DIR": str(encoder_models_dir), "FACEGEN_UPLOAD_TIMEOUT_S": "3"}) as server:
        yield server


def https_post(server, context, path: str, data: bytes, content_type: str = "image/jpeg"):
    request = urllib.request.Request(server.url(path), data=data, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def raw_exchange(server, context, head: bytes, body: bytes, wait_s: float = 30) -> bytes:
    """Send a request head and (part of) a body over TLS, then read whatever the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(head + body)
            received = b""
            try:
                while chunk := tls.recv(65536):
                    received += chunk
            except (ConnectionResetError, socket.timeout, ssl.SSLError):
                pass
    return received


@pytest.mark.slow
def test_gunicorn_edits_a_real_photo_like_create_app(served_encoder, verified_context, encoder_client, celeba_photo):
    from facegen import framing

    photo = celeba_photo(6)
    status, headers, body = https_post(served_encoder, verified_context, "/api/edit?attrs=Smiling&view=strip", photo)
    assert status == 200 and headers["Content-Type"] == "image/png" and headers["Cache-Control"] == "no-store"
    strip = rgb_of(body)
    assert strip.shape == (TINY_RESOLUTION, 3 * TINY_RESOLUTION, 3)
    assert int(headers["X-Faces-Found"]) >= 1 and "Smiling" in headers["X-Attributes"].split(",")
    # A face got back: the framed panel is a face the detector finds again.
    framed = np.asarray(Image.fromarray(strip[:, :TINY_RESOLUTION]).resize((128, 128), Image.Resampling.LANCZOS))
    assert framing.detect_faces(framed), "the framed photo holds a face"
    # Another process, another venv, the same bytes as create_app() here.
    assert ok(post(encoder_client, "/api/edit?attrs=Smiling&view=strip", photo)).data == body
    status, headers, body = https_post(served_encoder, verified_context, "/api/encode", photo)
    assert status == 200 and json.loads(body)["model"] == ENCODER_MODEL
    # Multipart through the real server too.
    boundary = "facegen-test-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"me.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    status, _, multipart_body = https_post(served_encoder, verified_context, "/api/edit?attrs=Smiling&view=strip",
                                           form, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and multipart_body == ok(post(encoder_client, "/api/edit?attrs=Smiling&view=strip",
                                                      photo)).data


@pytest.mark.slow
def test_gunicorn_refuses_an_oversized_body_with_413_without_reading_it(served_encoder, verified_context):
    size = MAX_UPLOAD_BYTES + 1
    head = (f"POST /api/edit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    started = time.monotonic()
    answer = raw_exchange(served_encoder, verified_context, head, b"\xff\xd8\xff" + bytes(60_000))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"error":' in answer and f"larger than {MAX_UPLOAD_BYTES} bytes".encode() in answer
    assert time.monotonic() - started < 20
    # A multipart body announced too large: refused the same way.
    head = (f"POST /api/encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {size + 100_000}\r\nConnection: close\r\n\r\n").encode()
    assert raw_exchange(served_encoder, verified_context, head, b"--x\r\n").startswith(b"HTTP/1.1 413")


@pytest.mark.slow
def test_gunicorn_answers_a_stalled_upload_with_408(served_encoder, verified_context, celeba_photo):
    photo = celeba_photo(0)
    head = (f"POST /api/edit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(photo)}\r\nConnection: close\r\n\r\n").encode()
    started = time.monotonic()
    answer = raw_exchange(served_encoder, verified_context, head, photo[:1000])  # and then nothing more
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"did not arrive within 3 s" in answer
    assert 2.5 < elapsed < 20
    # The worker thread was freed: the service still answers.
    with urllib.request.urlopen(served_encoder.url("/readyz"), context=verified_context, timeout=10) as response:
        assert response.status == 200


@pytest.mark.slow
def test_gunicorn_logs_hold_no_photo_bytes(served_encoder, verified_context, celeba_photo):
    photo = celeba_photo(7)
    for path in ("/api/edit?view=framed", "/api/encode", "/api/edit?attrs=Nope"):
        https_post(served_encoder, verified_context, path, photo)
    https_post(served_encoder, verified_context, "/api/edit", photo[: len(photo) // 2])  # an error, logged or not
    time.sleep(0.5)
    log = served_encoder.log_path.read_bytes()
    assert b"POST /api/edit?view=framed HTTP/1.1" in log and b"POST /api/encode HTTP/1.1" in log, log[-2000:]
    text = log.decode("latin-1")
    for start in range(50, len(photo) - 32, 200):
        piece = photo[start:start + 16]
        for form in (piece.decode("latin-1"), base64.b64encode(piece).decode()[:16], piece.hex(), repr(piece)[2:-1]):
            assert form not in text, f"bytes {start}..{start + 16} of the photo are in the server log"


@pytest.mark.slow
@pytest.mark.parametrize("key, method, other_method", [("edit_gains", "generator", "pti"),
                                                       ("inversion_edit_gains", "pti", "generator")])
def test_the_manifests_edit_gains_push_only_the_attributes_they_name(encoder_models_dir, celeba_photo, tmp_path, key,
                                                                     method, other_method):
    """encoder.edit_gains (methods generator and photo) and encoder.inversion_edit_gains (pti and pti-photo;
    facegen.photo_edit.pushed): a gain on one attribute changes that attribute's edits by its own methods and nothing
    else; a served model reads them from its manifest."""
    import shutil

    from app import create_app
    from facegen import model_folder

    photo = celeba_photo(3)
    gained, plain = ENCODER_ATTRIBUTES[0], ENCODER_ATTRIBUTES[1]
    pushed_dir = tmp_path / "models"
    shutil.copytree(encoder_models_dir, pushed_dir)
    manifest = model_folder.read_manifest(pushed_dir / ENCODER_MODEL)
    manifest["encoder"][key] = {gained: 2.5}
    model_folder.write_manifest(pushed_dir / ENCODER_MODEL, manifest)
    clients = {name: create_app({"FACEGEN_MODELS_DIR": str(folder), "TESTING": True}).test_client()
               for name, folder in (("gain 1", encoder_models_dir), ("gained", pushed_dir))}
    found = ok(post(clients["gain 1"], "/api/edit?view=rebuilt", photo)).headers["X-Attributes-Found"].split(",")
    flips = {name: (name if state.startswith("-") else "-" + name) for name, state in zip(ENCODER_ATTRIBUTES, found)}
    faces = {(which, name, how): rgb_of(ok(post(client, f"/api/edit?method={how}&attrs={flips[name]}", photo)).data)
             for which, client in clients.items() for name in (gained, plain)
             for how in (method, other_method)}  # pixels: the marks name the version
    assert np.abs(faces["gained", gained, method].astype(int) - faces["gain 1", gained, method]).mean() > 1
    np.testing.assert_array_equal(faces["gained", plain, method], faces["gain 1", plain, method])
    np.testing.assert_array_equal(faces["gained", gained, other_method], faces["gain 1", gained, other_method])


def test_pushed_moves_only_the_changed_attributes_by_their_gains():
    from facegen.photo_edit import pushed

    found = np.array([0, 1, 0, 1], np.float32)
    edited = np.array([1, 0, 0, 1], np.float32)
    np.testing.assert_allclose(pushed(found, edited, np.array([2, 1.5, 3, 3], np.float32)), [2, -0.5, 0, 1])
    np.testing.assert_allclose(pushed(found, edited, 1.0), edited)
