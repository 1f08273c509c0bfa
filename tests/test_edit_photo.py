"""The edited face back in the uploaded photo (/api/edit?view=photo) and the edit applied as a change to the photo
(method=photo, the default): facegen.framing's inverse of the framing warp on synthetic images, then the route on
the tiny exported model with an encoder (tests/conftest.py's 'tiny-enc') and real CelebA-HQ photos read in place.
"""

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from facegen import framing
from tests.conftest import ENCODER_MODEL, TINY_RESOLUTION

TEMPLATE = np.array([[0.377, 0.476], [0.624, 0.475], [0.501, 0.630], [0.391, 0.735], [0.610, 0.734]])


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def rgb_of(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def post(client, query: str, data: bytes, content_type: str = "image/png"):
    return client.post(f"/api/edit?{query}", data=data, content_type=content_type)


def ok(response) -> bytes:
    assert response.status_code == 200, (response.status_code, response.data[:300])
    assert response.headers["Cache-Control"] == "no-store"
    return response.data


def tilted_landmarks(centre=(170.0, 130.0), scale=2.6, angle=0.3) -> np.ndarray:
    """The template's landmarks as a face 2.6 times the 64 px frame, turned by 0.3 rad, placed in a photo."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (TEMPLATE - 0.5) * 64 * scale @ rotation.T + np.asarray(centre)


def blob(size: int, at, sigma: float, height: float) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    bump = height * np.exp(-((xs - at[0]) ** 2 + (ys - at[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat(bump[..., None], 3, axis=2).astype(np.float32)


# --- facegen.framing: the inverse warp -------------------------------------------------------------------------------

def test_a_change_goes_back_to_where_the_framing_took_it_from():
    photo = np.full((260, 340, 3), 100, np.uint8)
    landmarks = tilted_landmarks()
    for index in (0, 2, 4):  # an eye, the nose, a mouth corner
        change = blob(64, TEMPLATE[index] * 64, 2.0, 80.0)
        added = framing.unframe_change(photo, change, landmarks, TEMPLATE).astype(np.float64) - photo
        weights = added[..., 0]
        ys, xs = np.mgrid[0:photo.shape[0], 0:photo.shape[1]] + 0.5
        centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        assert np.abs(centroid - landmarks[index]).max() < 1.0, (index, centroid, landmarks[index])
        # 2.6 times larger in the photo: a 2 px blob spreads over about 5 px, its peak stays near 80.
        assert 70 <= weights.max() <= 81


def test_unframe_then_frame_gives_the_change_back_and_nothing_moves_elsewhere():
    rng = np.random.RandomState(0)
    photo = np.clip(128 + rng.normal(0, 12, (260, 340, 3)), 0, 255).astype(np.uint8)
    landmarks = tilted_landmarks()
    change = blob(64, (30, 36), 9.0, 40.0) - blob(64, (40, 22), 6.0, 30.0)
    changed = framing.unframe_change(photo, change, landmarks, TEMPLATE)
    assert changed.shape == photo.shape and changed.dtype == np.uint8
    seen = (framing.frame_face(changed, landmarks, TEMPLATE, 64).astype(np.float64)
            - framing.frame_face(photo, landmarks, TEMPLATE, 64))
    inner = (slice(8, 56), slice(8, 56))
    assert np.abs(seen[inner] - change[inner]).max() < 4.0  # the framing's resampling, and rounding
    # Zero change: the very same pixels; outside the framed square's footprint: untouched.
    np.testing.assert_array_equal(framing.unframe_change(photo, np.zeros_like(change), landmarks, TEMPLATE), photo)
    np.testing.assert_array_equal(changed[:, :20], photo[:, :20])


def test_the_border_feather_fades_to_zero_at_the_edge():
    feather = framing.border_feather(64, 8)
    assert feather[32, 32] == 1.0 and feather[0, 32] < 0.02 and feather[32, 63] < 0.02
    assert np.all(np.diff(feather[32, :32]) >= 0)


def test_method_photo_adds_the_generators_change_only_where_it_changes_things():
    from facegen import photo_edit as edits

    rng = np.random.RandomState(1)
    framed = rng.randint(30, 180, (64, 64, 3)).astype(np.uint8)
    rebuilt = rng.randint(40, 180, (64, 64, 3)).astype(np.uint8)  # another face altogether
    # The generator's two faces differ a little everywhere (not an edit: below the mask's threshold) ...
    generated = np.clip(rebuilt.astype(int) + rng.randint(-2, 3, rebuilt.shape), 0, 255).astype(np.uint8)
    generated[40:52, 24:40] = np.clip(rebuilt[40:52, 24:40].astype(int) + 60, 0, 255)  # ... and the edit: the mouth
    edited = edits.photo_edit(framed, generated, rebuilt)
    far = np.ones((64, 64), bool)
    far[32:60, 16:48] = False
    np.testing.assert_array_equal(edited[far], framed[far])  # the rest is the photo's own, not the rebuilt face
    centre = edited[44:48, 30:34].astype(int) - framed[44:48, 30:34]
    assert np.abs(centre - (generated[44:48, 30:34].astype(int) - rebuilt[44:48, 30:34])).max() <= 1
    # Scale-free: the same change at twice the side covers the same part of the face.
    mask = edits.change_mask(generated, rebuilt)
    big = edits.change_mask(np.kron(generated, np.ones((2, 2, 1), np.uint8)), np.kron(rebuilt, np.ones((2, 2, 1),
                                                                                                     np.uint8)))
    halved = big.reshape(64, 2, 64, 2).mean(axis=(1, 3))
    assert np.abs(mask - halved).max() < 0.1


# --- the route -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def portrait(celeba_photo):
    """A CelebA-HQ photo as a lossless, not square PNG, the face off-centre: what the whole-photo view is made of."""
    face = rgb_of(celeba_photo(6))
    canvas = np.zeros((220, 300, 3), np.uint8)
    canvas[:] = (40, 90, 150)
    canvas[60:188, 140:268] = face
    return canvas


@pytest.mark.slow
def test_the_whole_photo_view_is_the_upright_photo_at_its_own_size(encoder_client, portrait):
    pixels = ok(post(encoder_client, "view=photo&attrs=Smiling", png_bytes(portrait)))
    assert rgb_of(pixels).shape == portrait.shape
    # size applies to the faces only; the photo keeps its own.
    assert rgb_of(ok(post(encoder_client, "view=photo&size=256", png_bytes(portrait)))).shape == portrait.shape
    # Stored sideways with an EXIF orientation: the answer is upright, like the upload shown by a browser.
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(np.ascontiguousarray(np.rot90(portrait, 1))).save(buffer, "JPEG", quality=95, exif=exif)
    with Image.open(io.BytesIO(buffer.getvalue())) as stored:
        upright = ImageOps.exif_transpose(stored).size
    assert upright == (300, 220)
    answer = rgb_of(ok(post(encoder_client, "view=photo", buffer.getvalue(), "image/jpeg")))
    assert (answer.shape[1], answer.shape[0]) == upright


@pytest.mark.slow
def test_a_large_photo_comes_back_downscaled_to_the_documented_side(encoder_client, portrait):
    from app import edits

    large = np.asarray(Image.fromarray(portrait).resize((1500, 1100), Image.Resampling.BICUBIC))
    answer = rgb_of(ok(post(encoder_client, "view=photo&attrs=Smiling", png_bytes(large))))
    assert edits.PHOTO_MAX_SIDE == 1024
    assert answer.shape == (751, 1024, 3)  # 1100 * 1024 / 1500 = 750.9


@pytest.mark.slow
def test_same_photo_and_query_same_photo_bytes(encoder_client, portrait, celeba_photo):
    data = png_bytes(portrait)
    first = ok(post(encoder_client, "view=photo&attrs=Smiling,-Male", data))
    assert ok(post(encoder_client, "attrs=-male,SMILING&view=photo", data)) == first
    multipart = encoder_client.post("/api/edit?view=photo&attrs=Smiling,-Male",
                                    data={"image": (io.BytesIO(data), "me.png", "image/png")},
                                    content_type="multipart/form-data")
    assert ok(multipart) == first
    assert ok(post(encoder_client, "view=photo&attrs=Smiling,-Male&method=generator", data)) != first


def test_no_change_gives_the_photo_back_exactly(encoder_app, portrait):
    """In-process, before the PNG (whose invisible watermark, facegen/provenance.py, moves every pixel a little)."""
    from app import edits, uploads

    model = encoder_app.extensions["facegen"].get(ENCODER_MODEL)
    renderer = encoder_app.extensions["facegen_renderer"]
    photo = edits.encode_photo(uploads.decode_image(png_bytes(portrait)), model, renderer.encoders[ENCODER_MODEL])
    views = edits.render_views(photo, edits.edited_vector(photo, None), ("photo", "edited", "framed"),
                               TINY_RESOLUTION, renderer.batchers[ENCODER_MODEL], edits.FALLBACK_METHOD)
    np.testing.assert_array_equal(views["photo"], portrait)
    np.testing.assert_array_equal(views["edited"], views["framed"])


@pytest.mark.slow
def test_the_edit_changes_the_face_and_nothing_else_in_the_photo(encoder_client, portrait):
    data = png_bytes(portrait)
    found = encoder_client.post("/api/encode", data=data, content_type="image/png").get_json()
    face = found["face"]["box"]
    unchanged = rgb_of(ok(post(encoder_client, "view=photo", data)))
    first = found["found"].split(",")[0]
    flip = first[1:] if first.startswith("-") else "-" + first
    changed = {}
    for method in edits_methods():
        edited = rgb_of(ok(post(encoder_client, f"view=photo&attrs={flip}&method={method}", data)))
        changed[method] = np.abs(edited.astype(int) - unchanged).sum(axis=2)
        ys, xs = np.nonzero(changed[method])
        assert len(xs), method
        # Only around the face: inside the framed square's footprint (about twice the detector's box).
        width = face[2] - face[0]
        assert xs.min() >= face[0] - width and xs.max() <= face[2] + width, method
        np.testing.assert_array_equal(edited[:, :100], unchanged[:, :100])  # the left third holds no face
    # The generator's face replaces the framed square; the photo method changes less of the photo.
    assert changed["photo"].sum() < changed["generator"].sum()


def edits_methods():
    from app import edits

    return edits.METHODS


@pytest.mark.slow
def test_method_photo_is_the_framed_photo_plus_the_generators_change(encoder_client, portrait):
    from facegen import photo_edit as edits

    data = png_bytes(portrait)
    found = encoder_client.post("/api/encode", data=data, content_type="image/png").get_json()["found"].split(",")
    flip = ",".join(name[1:] if name.startswith("-") else "-" + name for name in found[:2])
    views = {view: rgb_of(ok(post(encoder_client, f"attrs={flip}&view={view}&method={method}", data)))
             for view, method in (("framed", "photo"), ("rebuilt", "photo"), ("edited", "generator"),
                                  ("edited", "photo"))}
    assert views["framed"].shape == (TINY_RESOLUTION, TINY_RESOLUTION, 3)
    generated = rgb_of(ok(post(encoder_client, f"attrs={flip}&view=edited&method=generator", data)))
    expected = edits.photo_edit(views["framed"], generated, views["rebuilt"])
    np.testing.assert_array_equal(views["edited"], expected)
    mask = edits.change_mask(generated, views["rebuilt"])
    untouched = mask == 0
    np.testing.assert_array_equal(views["edited"][untouched], views["framed"][untouched])


def test_format_json_holds_the_whole_photo_and_the_method(encoder_client, portrait):
    data = png_bytes(portrait)
    response = encoder_client.post("/api/edit?format=json&attrs=Smiling", data=data, content_type="image/png")
    body = response.get_json()
    assert response.status_code == 200 and body["method"] == "pti-photo"  # the default where the model can invert
    prefix = "data:image/png;base64,"
    assert body["images"]["photo"].startswith(prefix)
    assert base64.b64decode(body["images"]["photo"][len(prefix):]) == \
        ok(post(encoder_client, "view=photo&attrs=Smiling", data))


@pytest.mark.parametrize("query, words", [("method=pivotal", "method must be one of"),
                                          ("method=photo&method=generator", "method")])
def test_a_bad_method_is_a_400_naming_it(encoder_client, portrait, query, words):
    response = post(encoder_client, query, png_bytes(portrait))
    assert response.status_code == 400 and words in response.get_json()["error"]


# --- the deadline --------------------------------------------------------------------------------------------------

def test_an_edit_past_its_deadline_is_a_503_with_retry_after(encoder_client, portrait, monkeypatch):
    from facegen import framing

    data = png_bytes(portrait)
    slow_detect = framing.detect_faces

    def detect_slowly(*args, **kwargs):
        time.sleep(0.5)
        return slow_detect(*args, **kwargs)

    monkeypatch.setenv("FACEGEN_EDIT_DEADLINE_S", "0.3")
    monkeypatch.setattr(framing, "detect_faces", detect_slowly)
    for path in ("/api/edit?view=photo", "/api/encode"):
        response = encoder_client.post(path, data=data, content_type="image/png")
        assert response.status_code == 503, (path, response.data[:200])
        assert "deadline of 0.3 s (FACEGEN_EDIT_DEADLINE_S) before encoding" in response.get_json()["error"]
        assert int(response.headers["Retry-After"]) >= 1
    # Within the deadline the same slow detection is just slow.
    monkeypatch.setenv("FACEGEN_EDIT_DEADLINE_S", "30")
    assert encoder_client.post("/api/edit?view=photo", data=data, content_type="image/png").status_code == 200


# --- the inverted methods (facegen/inversion.py) -------------------------------------------------------------------

@pytest.mark.slow
def test_method_pti_gives_the_same_bytes_and_leaves_the_served_faces_alone(encoder_app, encoder_client, portrait):
    model = encoder_app.extensions["facegen"].get(ENCODER_MODEL)
    rng = np.random.RandomState(4)
    noise = rng.standard_normal((3, model.latent_size)).astype(np.float32)
    attrs = (rng.uniform(size=(3, len(model.attributes))) > 0.5).astype(np.float32)
    served = model.generate(noise, attrs)
    data = png_bytes(portrait)
    first = {method: ok(post(encoder_client, f"view=strip&attrs=Smiling&method={method}", data))
             for method in ("pti", "pti-photo")}
    for method, strip in first.items():
        assert ok(post(encoder_client, f"view=strip&attrs=Smiling&method={method}", data)) == strip, method
    # The pti rebuild is the inversion's (not the encoder's), so the strips differ from method=photo's.
    assert ok(post(encoder_client, "view=rebuilt&method=pti", data)) != ok(post(encoder_client,
                                                                              "view=rebuilt&method=photo", data))
    # Pivotal tuning changed a copy: the faces /api/face serves are the exported model's, byte for byte.
    np.testing.assert_array_equal(model.generate(noise, attrs), served)


@pytest.mark.slow
def test_a_model_without_the_float_signature_edits_by_photo_and_refuses_the_pti_methods(encoder_models_dir, portrait,
                                                                                        tmp_path):
    """The default method is pti-photo only where the model can invert; an older export (no float signature in its
    manifest) gets photo by default, and a 400 naming method=photo when it asks for a pti method."""
    import shutil

    from app import create_app
    from facegen import model_folder

    folder = tmp_path / "models"
    shutil.copytree(encoder_models_dir, folder)
    manifest = model_folder.read_manifest(folder / ENCODER_MODEL)
    del manifest["signature"]["pixels"]  # as exported before the float signature
    model_folder.write_manifest(folder / ENCODER_MODEL, manifest)
    client = create_app({"FACEGEN_MODELS_DIR": str(folder), "TESTING": True}).test_client()
    data = png_bytes(portrait)
    body = client.post("/api/edit?format=json&attrs=Smiling", data=data, content_type="image/png").get_json()
    assert body["method"] == "photo", body
    listed = next(m for m in client.get("/api/models").get_json()["models"] if m["name"] == ENCODER_MODEL)
    assert listed["edit_methods"] == ["photo", "generator"] and listed["edit_method"] == "photo"  # the picker's
    response = post(client, "view=edited&attrs=Smiling&method=pti-photo", data)
    assert response.status_code == 400 and "method=photo" in response.get_json()["error"]


def test_an_inversion_that_cannot_start_in_time_is_a_503_with_retry_after(encoder_client, portrait, monkeypatch):
    from facegen import inversion

    def busy(self, *args, wait_s=None, **kwargs):
        raise TimeoutError("another photo's inversion")

    monkeypatch.setattr(inversion.Inverter, "invert", busy)
    response = post(encoder_client, "view=edited&attrs=Smiling&method=pti", png_bytes(portrait))
    assert response.status_code == 503 and "inversion" in response.get_json()["error"]
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.slow  # loads a tuning copy and traces the inversion graph
def test_the_service_warms_the_pti_methods_up_so_the_first_edit_traces_nothing(encoder_models_dir, portrait,
                                                                               monkeypatch):
    from app import create_app, edits

    monkeypatch.setattr(edits, "_inverters", {})
    create_app({"FACEGEN_MODELS_DIR": str(encoder_models_dir)})
    assert edits._inverters == {}  # off unless asked (gunicorn.conf.py asks): a plain create_app stays light
    app = create_app({"FACEGEN_MODELS_DIR": str(encoder_models_dir), "FACEGEN_WARM_INVERSION": True})
    app.extensions["facegen_inversion_warm_up"].join(timeout=600)
    model = app.extensions["facegen"].get(ENCODER_MODEL)
    inverter = edits._inverters[model]
    assert inverter._fit.experimental_get_tracing_count() == 1  # traced and run once, in the background
    ok(post(app.test_client(), "view=strip&attrs=Smiling,-Eyeglasses&method=pti", png_bytes(portrait)))
    assert edits._inverters[model] is inverter and inverter._fit.experimental_get_tracing_count() == 1
