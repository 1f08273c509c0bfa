"""Every endpoint of the service against a real exported tiny model (tests/conftest.py), through Flask's test client.

Good queries: image format, size, cache headers, determinism (also across processes), attributes and psi.
Bad queries: each class of bad input answers 4xx JSON ``{"error": ...}`` naming the problem, never a 500.
Broken model folders: create_app raises ModelError with a message that names the folder and the problem.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import (TABLE_ATTRIBUTES, TABLE_MODEL, TABLE_ROWS, TINY_ATTRIBUTES, TINY_LATENT_SIZE, TINY_MODEL,
                            TINY_RESOLUTION)

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
YEAR = "max-age=31536000"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_of(response) -> Image.Image:
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


def pixels(response) -> np.ndarray:
    return np.asarray(image_of(response).convert("RGB"))


def get_ok(client, url: str, mimetype: str = "image/png"):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.data[:300])
    assert response.mimetype == mimetype
    return response


# ---------------------------------------------------------------------------------------------- /api/face


def test_face_is_a_png_at_the_model_resolution_with_immutable_caching(client):
    response = get_ok(client, "/api/face?seed=42")
    assert response.data.startswith(PNG_MAGIC)
    image = image_of(response)
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == (TINY_RESOLUTION, TINY_RESOLUTION)
    assert YEAR in response.headers["Cache-Control"] and "public" in response.headers["Cache-Control"]
    assert "X-Seed" not in response.headers  # the query named its seed
    etag = response.headers["ETag"]
    assert etag.strip('"') and etag.startswith('"')
    # The face is not flat: an exported generator, even untrained, draws something.
    assert pixels(response).std() > 1


def test_same_query_same_bytes_and_etag(client):
    first = get_ok(client, "/api/face?seed=7&attrs=Male")
    second = get_ok(client, "/api/face?seed=7&attrs=Male")
    assert first.data == second.data
    assert first.headers["ETag"] == second.headers["ETag"]
    other = get_ok(client, "/api/face?seed=8&attrs=Male")
    assert other.data != first.data and other.headers["ETag"] != first.headers["ETag"]


def test_if_none_match_answers_304_without_a_body(client):
    response = get_ok(client, "/api/face?seed=11")
    etag = response.headers["ETag"]
    again = client.get("/api/face?seed=11", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    stale = client.get("/api/face?seed=11", headers={"If-None-Match": '"not-this-one"'})
    assert stale.status_code == 200 and stale.data == response.data


def test_absent_seed_draws_one_and_says_which(client):
    response = get_ok(client, "/api/face")
    seed = int(response.headers["X-Seed"])
    assert 0 <= seed <= 2**32 - 1
    # A random face must not be cached under the seedless URL...
    assert response.headers["Cache-Control"] == "no-store"
    # ...and its stable URL reproduces it exactly.
    location = response.headers["Content-Location"]
    assert f"seed={seed}" in location
    assert get_ok(client, location).data == response.data
    assert get_ok(client, f"/api/face?seed={seed}").data == response.data


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_face_size(client, size):
    image = image_of(get_ok(client, f"/api/face?seed=3&size={size}"))
    assert image.size == (size, size)


def test_native_size_is_allowed_and_equals_the_default(client):
    assert get_ok(client, f"/api/face?seed=3&size={TINY_RESOLUTION}").data == get_ok(client, "/api/face?seed=3").data


def test_attrs_are_case_insensitive_and_order_free(client):
    reference = get_ok(client, "/api/face?seed=5&attrs=Male,Smiling").data
    for spelling in ("male,smiling", "SMILING,MALE", " Male , Smiling ", "Smiling,Male,male"):
        assert get_ok(client, f"/api/face?seed=5&attrs={spelling}").data == reference, spelling


def test_attrs_change_the_image(client):
    faces = {attrs: get_ok(client, f"/api/face?seed=5&attrs={attrs}").data
             for attrs in ("-Male,-Eyeglasses,-Smiling", "Male,-Eyeglasses,-Smiling", "-Male,Eyeglasses,-Smiling",
                           "-Male,-Eyeglasses,Smiling", "Male,Eyeglasses,Smiling")}
    assert len(set(faces.values())) == len(faces)


def test_absent_attrs_are_sampled_from_the_seed(client):
    # Absent attrs: each attribute is drawn from the seed, so the face equals one of the explicit 2**3 vectors.
    sampled = get_ok(client, "/api/face?seed=9").data
    explicit = set()
    for bits in range(2 ** len(TINY_ATTRIBUTES)):
        signed = [("" if bits >> i & 1 else "-") + name for i, name in enumerate(TINY_ATTRIBUTES)]
        explicit.add(get_ok(client, f"/api/face?seed=9&attrs={','.join(signed)}").data)
    assert len(explicit) == 2 ** len(TINY_ATTRIBUTES) and sampled in explicit


def test_psi(client):
    default = get_ok(client, "/api/face?seed=21").data
    assert get_ok(client, "/api/face?seed=21&psi=1").data == default
    assert get_ok(client, "/api/face?seed=21&psi=1.0").data == default
    half = get_ok(client, "/api/face?seed=21&psi=0.5")
    assert half.data != default and image_of(half).size == (TINY_RESOLUTION, TINY_RESOLUTION)
    assert get_ok(client, "/api/face?seed=21&psi=.5").data == half.data


def test_model_parameter_names_the_default(client):
    assert get_ok(client, f"/api/face?seed=1&model={TINY_MODEL}").data == get_ok(client, "/api/face?seed=1").data


def test_seed_bounds_are_accepted(client):
    for seed in (0, 2**32 - 1):
        assert get_ok(client, f"/api/face?seed={seed}").data.startswith(PNG_MAGIC)


# Runs in a fresh interpreter: a new TensorFlow, a new NumPy stream, no shared cache.
CHILD = """
import hashlib, json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path.insert(0, sys.argv[1])
from app import create_app
client = create_app({"FACEGEN_MODELS_DIR": sys.argv[2]}).test_client()
out = {}
for url in json.loads(sys.argv[3]):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.data[:200])
    out[url] = hashlib.sha256(response.data).hexdigest()
print("RESULT " + json.dumps(out))
"""
CROSS_PROCESS_URLS = ["/api/face?seed=42", "/api/face?seed=42&attrs=Male,Eyeglasses", "/api/face?seed=4294967295",
                      "/api/face?seed=1&psi=0.7&size=128", "/api/faces?seeds=1,2,3,4",
                      "/api/interpolate?from=1&to=2&steps=4"]


@pytest.mark.slow
def test_same_query_same_bytes_across_processes(client, tiny_models_dir):
    here = {}
    for url in CROSS_PROCESS_URLS:
        response = client.get(url)
        assert response.status_code == 200
        here[url] = sha256(response.data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGEN_")}
    result = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(tiny_models_dir),
                             json.dumps(CROSS_PROCESS_URLS)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    there = json.loads(line[len("RESULT "):])
    assert there == here


# --------------------------------------------------------------------------------------------- /api/faces


def test_grid_of_seeds(client):
    response = get_ok(client, "/api/faces?seeds=1,2,3")
    assert response.data.startswith(PNG_MAGIC)
    # 3 faces: 2 columns (ceil(sqrt(3))), 2 rows.
    assert image_of(response).size == (2 * TINY_RESOLUTION, 2 * TINY_RESOLUTION)
    assert YEAR in response.headers["Cache-Control"] and "ETag" in response.headers
    assert get_ok(client, "/api/faces?seeds=1,2,3").data == response.data


def test_grid_cells_are_the_single_faces(client):
    # Two cells: the grid is 64 px high, under the watermark's smallest side (facegen/watermark.py), so its pixels
    # are the faces' own; a 128 px grid carries a mark of its own that its 64 px faces do not.
    grid = pixels(get_ok(client, "/api/faces?seeds=10,11&attrs=Male&size=64"))
    assert grid.shape == (64, 128, 3)
    for index, seed in enumerate((10, 11)):
        row, column = divmod(index, 2)
        cell = grid[row * 64:(row + 1) * 64, column * 64:(column + 1) * 64].astype(int)
        face = pixels(get_ok(client, f"/api/face?seed={seed}&attrs=Male&size=64")).astype(int)
        # Batches of different sizes may round a pixel differently in the generator; the faces are the same.
        assert np.abs(cell - face).max() <= 2, seed


@pytest.mark.parametrize("count, columns, rows", [(1, 1, 1), (2, 2, 1), (5, 3, 2), (16, 4, 4), (64, 8, 8)])
def test_grid_of_n(client, count, columns, rows):
    response = get_ok(client, f"/api/faces?n={count}&start=100")
    assert image_of(response).size == (columns * TINY_RESOLUTION, rows * TINY_RESOLUTION)
    assert YEAR in response.headers["Cache-Control"]


def test_grid_n_equals_consecutive_seeds(client):
    assert get_ok(client, "/api/faces?n=3&start=50").data == get_ok(client, "/api/faces?seeds=50,51,52").data


def test_grid_without_seeds_or_start_is_random(client):
    response = get_ok(client, "/api/faces?n=4")
    start = int(response.headers["X-Seed"])
    assert response.headers["Cache-Control"] == "no-store"
    assert get_ok(client, f"/api/faces?n=4&start={start}").data == response.data


def test_grid_default_count_and_cell_size(client):
    image = image_of(get_ok(client, "/api/faces?start=0&size=64"))
    assert image.size == (4 * 64, 4 * 64)  # 16 faces by default


def test_grid_json_lists_face_urls(client):
    response = get_ok(client, "/api/faces?seeds=3,1,2&attrs=smiling&format=json", mimetype="application/json")
    body = response.get_json()
    assert body["model"] == TINY_MODEL and body["size"] == TINY_RESOLUTION
    assert [face["seed"] for face in body["faces"]] == [3, 1, 2]
    for face in body["faces"]:
        assert face["url"].startswith("/api/face?") and "attrs=Smiling" in face["url"]
        expected = get_ok(client, f"/api/face?seed={face['seed']}&attrs=Smiling").data
        assert get_ok(client, face["url"]).data == expected


# ---------------------------------------------------------------------------------------- /api/interpolate


@pytest.mark.parametrize("fmt, mimetype, pil_format", [("gif", "image/gif", "GIF"), ("webp", "image/webp", "WEBP")])
def test_interpolation_animation(client, fmt, mimetype, pil_format):
    response = get_ok(client, f"/api/interpolate?from=1&to=2&steps=6&format={fmt}", mimetype=mimetype)
    image = image_of(response)
    assert image.format == pil_format
    assert image.n_frames == 6
    assert image.size == (TINY_RESOLUTION, TINY_RESOLUTION)
    assert YEAR in response.headers["Cache-Control"]
    assert get_ok(client, f"/api/interpolate?from=1&to=2&steps=6&format={fmt}", mimetype=mimetype).data \
        == response.data


def test_interpolation_ends_are_the_faces(client):
    animation = image_of(get_ok(client, "/api/interpolate?from=4&to=5&steps=3&attrs=Male&format=webp",
                                mimetype="image/webp"))
    for frame, seed in ((0, 4), (2, 5)):
        animation.seek(frame)
        frame_pixels = np.asarray(animation.convert("RGB")).astype(int)
        face = pixels(get_ok(client, f"/api/face?seed={seed}&attrs=Male")).astype(int)
        assert np.abs(frame_pixels - face).max() <= 2


def test_interpolation_between_attribute_sets(client):
    response = get_ok(client, "/api/interpolate?from=8&from_attrs=-Male,-Smiling&to_attrs=Male,Smiling&steps=4"
                      "&size=64", mimetype="image/gif")
    image = image_of(response)
    assert image.n_frames == 4 and image.size == (64, 64)


def test_interpolation_default_steps(client):
    assert image_of(get_ok(client, "/api/interpolate?from=1&to=3", mimetype="image/gif")).n_frames == 16


# ----------------------------------------------------------------------------------- models, probes, openapi


def test_models_lists_the_manifest(client):
    response = get_ok(client, "/api/models", mimetype="application/json")
    body = response.get_json()
    assert body["default"] == TINY_MODEL
    [model] = body["models"]
    assert model["name"] == TINY_MODEL and model["default"] is True
    assert model["resolution"] == TINY_RESOLUTION and model["latent_size"] == TINY_LATENT_SIZE
    assert model["attributes"] == list(TINY_ATTRIBUTES) and model["conditional"] is True
    # Exported without an attribute table: open attributes are drawn independently, as before the table existed.
    assert model["attribute_sampling"] == "independent" and model["attribute_rows"] is None
    assert model["sizes"] == [TINY_RESOLUTION, 64, 128, 256, 512]
    # Exported without an encoder: it takes no photos (tests/test_edit.py serves one that does).
    assert model["can_encode"] is False and body["encoders"] == []
    assert isinstance(model["version"], str) and model["version"]
    manifest = model["manifest"]
    assert manifest["format"] == "facegen-model/1"
    assert manifest["resolution"] == TINY_RESOLUTION and manifest["latent_size"] == TINY_LATENT_SIZE
    assert manifest["attributes"] == list(TINY_ATTRIBUTES)
    for field in ("attribute_frequencies", "dataset", "training", "signature"):
        assert field in manifest, field


def test_healthz(client):
    response = get_ok(client, "/healthz", mimetype="application/json")
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz(client):
    response = get_ok(client, "/readyz", mimetype="application/json")
    body = response.get_json()
    assert body["status"] == "ready" and body["default"] == TINY_MODEL and body["models"] == [TINY_MODEL]


def test_openapi_document_is_valid_and_complete(app, client):
    document = get_ok(client, "/openapi.json", mimetype="application/json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes - {"/metrics"} <= set(document["paths"]), routes - set(document["paths"])
    for path in ("/api/face", "/api/faces", "/api/interpolate", "/api/models", "/healthz", "/readyz",
                 "/openapi.json", "/"):
        assert "get" in document["paths"][path], path
    for path in ("/api/encode", "/api/edit"):  # uploads: POST with the photo as the body
        operation = document["paths"][path]["post"]
        body = operation["requestBody"]["content"]
        assert {"image/jpeg", "image/png", "image/webp", "multipart/form-data"} <= set(body), path
        assert {"400", "408", "413", "415", "422"} <= set(operation["responses"]), path
    edit_params = {p["name"]: p for p in document["paths"]["/api/edit"]["post"]["parameters"]}
    assert set(edit_params) == {"model", "attrs", "size", "format", "view", "method"}
    # Every method the service takes is documented, and no default that depends on the model is promised.
    method = edit_params["method"]["schema"]
    assert method["enum"] == ["photo", "generator", "pti", "pti-photo"] and "default" not in method
    face_params = {p["name"] for p in document["paths"]["/api/face"]["get"]["parameters"]}
    assert face_params == {"model", "seed", "attrs", "psi", "size"}
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def test_gallery_page_html(client):
    response = get_ok(client, "/", mimetype="text/html")
    html = response.get_data(as_text=True)
    assert html.lstrip().lower().startswith("<!doctype html>")
    for needle in ('id="grid"', 'id="more"', 'id="seed"', 'id="model"', 'id="attribute-boxes"', 'id="lightbox"',
                   "gallery.js", "gallery.css", 'data-max-seed="4294967295"'):
        assert needle in html, needle
    for asset in ("/static/gallery.js", "/static/gallery.css"):
        assert client.get(asset).status_code == 200


# ----------------------------------------------------------------------------------------------- bad input

BAD_SEEDS = ["abc", "-1", "4294967296", "99999999999999999999999", "1.5", "", " 1", "1e3", "0x10", "+5", "１"]
BAD_PSI = ["nan", "NaN", "inf", "-inf", "0", "0.0", "2", "1.0001", "-0.5", "abc", "", "1e999", "1_0", "0.5.5"]
BAD_SIZES = ["0", "-64", "100", "1024", "4096", "abc", "64.0", "99999999"]

BAD_QUERIES = (
    [pytest.param(f"/api/face?seed={seed}", "seed", id=f"seed={seed!r}") for seed in BAD_SEEDS]
    + [pytest.param(f"/api/face?seed=1&psi={psi}", "psi", id=f"psi={psi!r}") for psi in BAD_PSI]
    + [pytest.param(f"/api/face?seed=1&size={size}", "size", id=f"size={size!r}") for size in BAD_SIZES]
    + [
        pytest.param("/api/face?seed=1&attrs=Wings", "Wings", id="unknown-attr"),
        pytest.param("/api/face?seed=1&attrs=Male,Wings,Tail", "Wings", id="unknown-attrs-among-known"),
        pytest.param("/api/face?seed=1&model=../x", "model", id="model-dotdot-slash"),
        pytest.param("/api/face?seed=1&model=%2e%2e", "model", id="model-encoded-dotdot"),
        pytest.param("/api/face?seed=1&model=..%2Ftiny", "model", id="model-encoded-slash"),
        pytest.param("/api/face?seed=1&model=/etc/passwd", "model", id="model-absolute"),
        pytest.param("/api/face?seed=1&model=.hidden", "model", id="model-dotfile"),
        pytest.param("/api/face?seed=1&model=a\\b", "model", id="model-backslash"),
        pytest.param("/api/face?seed=1&model=" + "x" * 65, "model", id="model-too-long"),
        pytest.param("/api/face?seed=1&model=", "model", id="model-empty"),
        pytest.param("/api/face?seed=1&atrs=Male", "atrs", id="unknown-parameter"),
        pytest.param("/api/face?seed=1&seed=2", "seed", id="repeated-parameter"),
        pytest.param("/api/faces?n=0", "n", id="n=0"),
        pytest.param("/api/faces?n=65", "n", id="n-too-large"),
        pytest.param("/api/faces?n=1000000", "n", id="n-huge"),
        pytest.param("/api/faces?n=abc", "n", id="n-not-integer"),
        pytest.param("/api/faces?n=-3", "n", id="n-negative"),
        pytest.param("/api/faces?seeds=" + ",".join(map(str, range(65))), "seeds", id="too-many-seeds"),
        pytest.param("/api/faces?seeds=1,,2", "seed", id="seeds-empty-item"),
        pytest.param("/api/faces?seeds=1,x", "seed", id="seeds-not-integer"),
        pytest.param("/api/faces?seeds=1,4294967296", "seed", id="seeds-out-of-range"),
        pytest.param("/api/faces?seeds=1,2&n=2", "seeds", id="seeds-and-n"),
        pytest.param("/api/faces?start=-1", "start", id="start-negative"),
        pytest.param("/api/faces?n=2&size=512", "size", id="grid-cell-too-large"),
        pytest.param("/api/faces?n=2&format=jpeg", "format", id="grid-format"),
        pytest.param("/api/faces?n=2&attrs=Wings", "Wings", id="grid-unknown-attr"),
        pytest.param("/api/faces?n=2&psi=nan", "psi", id="grid-psi"),
        pytest.param("/api/faces?n=2&model=../x", "model", id="grid-path-model"),
        pytest.param("/api/interpolate?to=2", "from", id="interpolate-missing-from"),
        pytest.param("/api/interpolate?from=x&to=2", "from", id="interpolate-bad-from"),
        pytest.param("/api/interpolate?from=1&to=4294967296", "to", id="interpolate-bad-to"),
        pytest.param("/api/interpolate?from=1&to=2&steps=1", "steps", id="steps-too-small"),
        pytest.param("/api/interpolate?from=1&to=2&steps=61", "steps", id="steps-too-large"),
        pytest.param("/api/interpolate?from=1&to=2&steps=100000", "steps", id="steps-huge"),
        pytest.param("/api/interpolate?from=1&to=2&steps=ten", "steps", id="steps-not-integer"),
        pytest.param("/api/interpolate?from=1&to=2&size=512", "size", id="interpolate-size"),
        pytest.param("/api/interpolate?from=1&to=2&format=mp4", "format", id="interpolate-format"),
        pytest.param("/api/interpolate?from=1&to_attrs=Wings", "Wings", id="interpolate-unknown-attr"),
        pytest.param("/api/interpolate?from=1&to=2&psi=0", "psi", id="interpolate-psi"),
    ]
)


@pytest.mark.parametrize("url, named", BAD_QUERIES)
def test_bad_input_is_a_json_4xx_naming_the_problem(client, url, named):
    response = client.get(url)
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) <= {"error", "allowed"}
    assert isinstance(body["error"], str) and named.lower() in body["error"].lower(), body
    assert "Traceback" not in body["error"] and "File \"" not in body["error"]
    assert response.headers["Cache-Control"] == "no-store"


def test_unknown_attribute_lists_the_allowed_ones(client):
    response = client.get("/api/face?seed=1&attrs=Male,Wings")
    assert response.status_code == 400
    body = response.get_json()
    assert body["allowed"] == list(TINY_ATTRIBUTES)
    for name in TINY_ATTRIBUTES:
        assert name in body["error"]


def test_unknown_model_is_404_and_lists_the_models(client):
    response = client.get("/api/face?seed=1&model=nope")
    assert response.status_code == 404
    body = response.get_json()
    assert "nope" in body["error"] and body["allowed"] == [TINY_MODEL]


def test_bad_size_lists_the_sizes(client):
    body = client.get("/api/face?seed=1&size=100").get_json()
    assert body["allowed"] == [TINY_RESOLUTION, 64, 128, 256, 512]


@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/api/face/42", "/api", "/static/nope.js", "/../etc/passwd"])
def test_unknown_route_is_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert "404" in response.get_json()["error"]


@pytest.mark.parametrize("method, path", [("post", "/api/face"), ("put", "/api/faces"), ("delete", "/api/models"),
                                          ("post", "/healthz"), ("patch", "/"), ("post", "/openapi.json")])
def test_wrong_method_is_json_405(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert "405" in response.get_json()["error"]
    assert "GET" in response.headers["Allow"]


def test_oversized_query_is_refused(client):
    response = client.get("/api/face?seed=1&attrs=" + "Male," * 1000)
    assert response.status_code == 414
    assert "too long" in response.get_json()["error"]


def test_head_works_like_get(client):
    response = client.head("/api/face?seed=42")
    assert response.status_code == 200 and response.mimetype == "image/png"


# ---------------------------------------------------------------------------------------- broken model dirs


def copy_tiny(tiny_models_dir: Path, target: Path, name: str = TINY_MODEL) -> Path:
    shutil.copytree(tiny_models_dir / TINY_MODEL, target / name)
    return target / name


def models_dir_missing(tiny, tmp):
    return tmp / "does-not-exist", "does not exist"


def models_dir_empty(tiny, tmp):
    return tmp, "no models"


def manifest_corrupt(tiny, tmp):
    (copy_tiny(tiny, tmp) / "manifest.json").write_text('{"format": "facegen-model/1", "resolution": ')
    return tmp, "not valid JSON"


def copy_tiny_with_manifest(tiny, tmp, **changes) -> Path:
    """The tiny model copied into tmp with some manifest fields replaced."""
    folder = copy_tiny(tiny, tmp)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **changes}))
    return folder


def manifest_wrong_format(tiny, tmp):
    copy_tiny_with_manifest(tiny, tmp, format="something-else/9")
    return tmp, "format"


def manifest_bad_resolution(tiny, tmp):
    copy_tiny_with_manifest(tiny, tmp, resolution="big")
    return tmp, "resolution"


def manifest_lies_about_resolution(tiny, tmp):
    copy_tiny_with_manifest(tiny, tmp, resolution=64)
    return tmp, "manifest promises"


def default_names_a_missing_model(tiny, tmp):
    copy_tiny(tiny, tmp)
    (tmp / "DEFAULT").write_text("facegen-64\n")
    return tmp, "'facegen-64' was not found"


def default_file_missing_with_two_models(tiny, tmp):
    copy_tiny(tiny, tmp, "one")
    copy_tiny(tiny, tmp, "two")
    return tmp, "DEFAULT"


def default_file_empty(tiny, tmp):
    copy_tiny(tiny, tmp)
    (tmp / "DEFAULT").write_text("\n")
    return tmp, "empty"


def default_is_path_like(tiny, tmp):
    copy_tiny(tiny, tmp)
    (tmp / "DEFAULT").write_text("../tiny\n")
    return tmp, "not a valid model name"


def saved_model_missing(tiny, tmp):
    (copy_tiny(tiny, tmp) / "saved_model.pb").unlink()
    return tmp, "saved_model.pb is missing"


def saved_model_corrupt(tiny, tmp):
    (copy_tiny(tiny, tmp) / "saved_model.pb").write_bytes(b"this is not a protobuf")
    return tmp, "cannot load the SavedModel"


def manifest_bad_attribute_table(tiny, tmp):
    copy_tiny_with_manifest(tiny, tmp, attribute_table={"rows": ["101", "10"], "counts": [3, 1]})
    return tmp, "attribute_table row 1 must be a string of 3"


def manifest_attribute_table_counts(tiny, tmp):
    copy_tiny_with_manifest(tiny, tmp, attribute_table={"rows": ["101"], "counts": [-2]})
    return tmp, "attribute_table count 0 must be a positive integer"


def variables_missing(tiny, tmp):
    shutil.rmtree(copy_tiny(tiny, tmp) / "variables")
    return tmp, "tiny"


@pytest.mark.parametrize("breakage", [
    models_dir_missing, models_dir_empty, manifest_corrupt, manifest_wrong_format, manifest_bad_resolution,
    manifest_lies_about_resolution, manifest_bad_attribute_table, manifest_attribute_table_counts,
    default_names_a_missing_model, default_file_missing_with_two_models,
    default_file_empty, default_is_path_like, saved_model_missing, saved_model_corrupt, variables_missing,
], ids=lambda f: f.__name__)
def test_broken_models_dir_fails_clearly_at_startup(tiny_models_dir, tmp_path, breakage):
    from app import ModelError, create_app

    models_dir, expected = breakage(tiny_models_dir, tmp_path)
    with pytest.raises(ModelError) as raised:
        create_app({"FACEGEN_MODELS_DIR": str(models_dir)})
    message = str(raised.value)
    assert expected in message, message
    assert str(models_dir) in message or str(tmp_path) in message, message
    assert "Traceback" not in message and len(message) < 1000, message


def test_configured_model_must_exist(tiny_models_dir):
    from app import ModelError, create_app

    with pytest.raises(ModelError, match="'other' was not found"):
        create_app({"FACEGEN_MODELS_DIR": str(tiny_models_dir), "FACEGEN_MODEL": "other"})


def test_a_broken_extra_model_is_skipped(tiny_models_dir, tmp_path):
    from app import create_app

    copy_tiny(tiny_models_dir, tmp_path)
    (copy_tiny(tiny_models_dir, tmp_path, "broken") / "manifest.json").write_text("{")
    (tmp_path / "DEFAULT").write_text(TINY_MODEL)
    client = create_app({"FACEGEN_MODELS_DIR": str(tmp_path)}).test_client()
    assert [m["name"] for m in client.get("/api/models").get_json()["models"]] == [TINY_MODEL]
    assert client.get("/api/face?seed=1&model=broken").status_code == 404


def test_environment_variables_configure_the_app(tiny_models_dir, tmp_path, monkeypatch):
    from app import create_app

    copy_tiny(tiny_models_dir, tmp_path, "alpha")
    copy_tiny(tiny_models_dir, tmp_path, "beta")
    monkeypatch.setenv("FACEGEN_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("FACEGEN_MODEL", "beta")
    client = create_app().test_client()
    body = client.get("/api/models").get_json()
    assert body["default"] == "beta" and [m["name"] for m in body["models"]] == ["alpha", "beta"]
    # Same weights under two names: the same face from either (the bytes differ: each file's marks name its model).
    alpha, default = client.get("/api/face?seed=3&model=alpha"), client.get("/api/face?seed=3")
    np.testing.assert_array_equal(pixels(alpha), pixels(default))
    assert b"alpha" in alpha.data and b"beta" in default.data


# ------------------------------------------------------------------------------------ attributes (issue 11)
# tiny-table (tests/conftest.py) draws open attributes as whole rows of TABLE_ROWS; tiny draws them independently.

def table_face(client, query: str):
    response = get_ok(client, f"/api/face?{query}")
    return response, response.headers["X-Attributes"], response.headers["X-Attributes-Explicit"]


def row_of(explicit: str) -> str:
    """'Male,-Young,...' (X-Attributes-Explicit) -> '10...', the TABLE_ROWS spelling."""
    values = {name.lstrip("-"): not name.startswith("-") for name in explicit.split(",")}
    assert list(values) == list(TABLE_ATTRIBUTES)
    return "".join("1" if values[name] else "0" for name in TABLE_ATTRIBUTES)


def test_models_say_which_sampling_each_uses(table_client):
    body = get_ok(table_client, "/api/models", mimetype="application/json").get_json()
    assert body["default"] == TABLE_MODEL
    models = {m["name"]: m for m in body["models"]}
    assert models[TABLE_MODEL]["attribute_sampling"] == "table"
    assert models[TABLE_MODEL]["attribute_rows"] == len(TABLE_ROWS)
    # The table itself stays in the model folder: the listing sums it up (the gallery loads this on every visit).
    assert models[TABLE_MODEL]["manifest"]["attribute_table"] == {"distinct_rows": len(TABLE_ROWS),
                                                                  "training_rows": sum(TABLE_ROWS.values())}
    assert models[TINY_MODEL]["attribute_sampling"] == "independent"
    assert "attribute_table" not in models[TINY_MODEL]["manifest"]


def test_without_attrs_every_face_is_a_training_row(table_client):
    seen = set()
    for seed in range(40):
        response, on, explicit = table_face(table_client, f"seed={seed}")
        row = row_of(explicit)
        assert row in TABLE_ROWS, (seed, explicit)
        assert response.headers["X-Attributes-Matched"] == "exact"
        assert on == ",".join(n for n, bit in zip(TABLE_ATTRIBUTES, row) if bit == "1")
        seen.add(row)
    assert len(seen) >= 5  # whole rows, not one


def test_named_attributes_are_kept_and_the_rest_follow_the_data(table_client):
    for seed in range(30):
        response, on, explicit = table_face(table_client, f"seed={seed}&attrs=smiling,-MALE")
        row = row_of(explicit)
        assert row[0] == "0" and row[2] == "1" and row in TABLE_ROWS  # 01101 or 00101: never a bearded woman
        assert response.headers["X-Attributes-Matched"] == "exact"
        assert "Smiling" in on.split(",") and "Male" not in on.split(",")


def test_a_combination_no_training_row_has_is_served_from_the_nearest_rows_and_says_so(table_client):
    for seed in range(20):
        response, on, explicit = table_face(table_client, f"seed={seed}&attrs=-Male,-No_Beard")
        row = row_of(explicit)
        assert row[0] == "0" and row[4] == "0" and row not in TABLE_ROWS
        assert response.headers["X-Attributes-Matched"] == "nearest"
    # The same attributes fixed explicitly are still not a training row: still nearest.
    again = get_ok(table_client, f"/api/face?seed=19&attrs={explicit}")
    assert again.headers["X-Attributes-Matched"] == "nearest" and again.data == response.data


@pytest.mark.parametrize("query", ["seed=3", "seed=3&attrs=Smiling", "seed=3&attrs=-Male,-No_Beard",
                                   "seed=4294967295&attrs=Eyeglasses&psi=0.6&size=64", f"seed=5&model={TINY_MODEL}",
                                   f"seed=5&model={TINY_MODEL}&attrs=-Male"])
def test_the_explicit_header_repeats_the_face(table_client, query):
    response, on, explicit = table_face(table_client, query)
    model = TINY_MODEL if TINY_MODEL + "&" in query + "&" else TABLE_MODEL
    names = TINY_ATTRIBUTES if model == TINY_MODEL else TABLE_ATTRIBUTES
    assert [n.lstrip("-") for n in explicit.split(",")] == list(names)
    assert on == ",".join(n for n in explicit.split(",") if not n.startswith("-"))
    # Naming every attribute, with or without '-', as the header spells it: the same bytes, the same headers.
    params = dict(part.split("=") for part in query.split("&"))
    params["attrs"] = explicit
    repeated = get_ok(table_client, "/api/face?" + "&".join(f"{k}={v}" for k, v in params.items()))
    assert repeated.data == response.data and repeated.headers["ETag"] == response.headers["ETag"]
    for header in ("X-Attributes", "X-Attributes-Explicit", "X-Attributes-Matched"):
        assert repeated.headers.get(header) == response.headers.get(header), header
    # Another vector for the same seed is another face (the attributes reach the generator).
    first = explicit.split(",")[0]
    flipped = ",".join([first[1:] if first.startswith("-") else "-" + first] + explicit.split(",")[1:])
    params["attrs"] = flipped
    assert get_ok(table_client, "/api/face?" + "&".join(f"{k}={v}" for k, v in params.items())).data != response.data


def test_random_seed_answers_carry_the_attributes_too(table_client):
    response = get_ok(table_client, "/api/face?attrs=Young")
    seed = response.headers["X-Seed"]
    assert row_of(response.headers["X-Attributes-Explicit"])[1] == "1"
    assert response.headers["Content-Location"].endswith(f"seed={seed}&attrs=Young")
    assert get_ok(table_client, response.headers["Content-Location"]).data == response.data


def test_old_manifest_keeps_its_independent_draws(client):
    """A model without a table: no attrs is the seed rule's independent draw, bytes as before."""
    from facegen import attributes

    for seed in (0, 9, 77):
        response = get_ok(client, f"/api/face?seed={seed}")
        assert "X-Attributes-Matched" not in response.headers  # no training rows to match against
        _, drawn, _ = attributes.seed_face(seed, TINY_LATENT_SIZE, 1.0, [0.5] * len(TINY_ATTRIBUTES), None)
        expected = ",".join(("" if on else "-") + name for name, on in zip(TINY_ATTRIBUTES, drawn))
        assert response.headers["X-Attributes-Explicit"] == expected
        # Naming one attribute fixes it; the others are the same independent draws.
        off = get_ok(client, f"/api/face?seed={seed}&attrs=-Eyeglasses").headers["X-Attributes-Explicit"]
        assert off.split(",")[1] == "-Eyeglasses"
        assert off.split(",")[::2] == expected.split(",")[::2]


def test_grid_headers_list_each_face_in_order(table_client):
    response = get_ok(table_client, "/api/faces?seeds=4,2,9&attrs=Smiling")
    on = response.headers["X-Attributes"].split(";")
    matched = response.headers["X-Attributes-Matched"].split(";")
    assert "X-Attributes-Explicit" not in response.headers  # on grids: the JSON listing
    assert len(on) == len(matched) == 3
    for seed, face_on, face_matched in zip((4, 2, 9), on, matched):
        single = get_ok(table_client, f"/api/face?seed={seed}&attrs=Smiling")
        assert face_on == single.headers["X-Attributes"] and face_matched == single.headers["X-Attributes-Matched"]
    listing = get_ok(table_client, "/api/faces?seeds=4,2,9&attrs=Smiling&format=json",
                     mimetype="application/json")
    body = listing.get_json()
    assert body["attribute_sampling"] == "table"
    assert listing.headers["X-Attributes"] == response.headers["X-Attributes"]
    for face, face_on in zip(body["faces"], on):
        assert ",".join(face["attributes"]) == face_on and face["matched"] == "exact"
        single = get_ok(table_client, face["url"])
        assert "attrs=Smiling" in face["url"] and single.headers["X-Attributes-Explicit"] == face["attrs"]
        assert get_ok(table_client, f"/api/face?seed={face['seed']}&attrs={face['attrs']}").data == single.data


def test_grid_cells_follow_the_same_rules(table_client):
    grid = pixels(get_ok(table_client, "/api/faces?seeds=10,11&size=64"))  # 64 px high: unwatermarked, as above
    for index, seed in enumerate((10, 11)):
        row, column = divmod(index, 2)
        cell = grid[row * 64:(row + 1) * 64, column * 64:(column + 1) * 64].astype(int)
        face = pixels(get_ok(table_client, f"/api/face?seed={seed}&size=64")).astype(int)
        assert np.abs(cell - face).max() <= 2, seed


def test_interpolation_ends_follow_the_same_rules(table_client):
    response = get_ok(table_client, "/api/interpolate?from=4&to=5&steps=3&from_attrs=-Male,-No_Beard"
                      "&to_attrs=Eyeglasses&format=webp", mimetype="image/webp")
    ends = [get_ok(table_client, "/api/face?seed=4&attrs=-Male,-No_Beard"),
            get_ok(table_client, "/api/face?seed=5&attrs=Eyeglasses")]
    for header in ("X-Attributes", "X-Attributes-Explicit", "X-Attributes-Matched"):
        assert response.headers[header] == ";".join(end.headers[header] for end in ends), header
    assert response.headers["X-Attributes-Matched"] == "nearest;exact"
    animation = image_of(response)
    for frame, end in ((0, ends[0]), (2, ends[1])):
        animation.seek(frame)
        assert np.abs(np.asarray(animation.convert("RGB")).astype(int) - pixels(end).astype(int)).max() <= 2
    # attrs sets both ends; the explicit vectors of the headers repeat the animation.
    both = get_ok(table_client, "/api/interpolate?from=4&to=5&steps=3&attrs=Smiling", mimetype="image/gif")
    start, end = both.headers["X-Attributes-Explicit"].split(";")
    repeated = get_ok(table_client, f"/api/interpolate?from=4&to=5&steps=3&from_attrs={start}&to_attrs={end}",
                      mimetype="image/gif")
    assert repeated.data == both.data


def test_cache_and_etags_key_on_the_resolved_vector(table_app, table_client):
    renderer = table_app.extensions["facegen_renderer"]
    first = get_ok(table_client, "/api/face?seed=31&attrs=Young")
    hits = renderer.cache.hits
    # The explicit spelling of the same vector is the same cache entry, the same bytes and the same ETag...
    same = get_ok(table_client, f"/api/face?seed=31&attrs={first.headers['X-Attributes-Explicit']}")
    assert renderer.cache.hits == hits + 1
    assert same.data == first.data and same.headers["ETag"] == first.headers["ETag"]
    assert table_client.get(f"/api/face?seed=31&attrs={first.headers['X-Attributes-Explicit']}",
                            headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    # ...while constraints that resolve to another vector never hit that entry.
    other_vectors = [q for q in ("attrs=-Young", "attrs=Young,Eyeglasses", "attrs=-Male,-No_Beard")
                     if get_ok(table_client, f"/api/face?seed=31&{q}").headers["X-Attributes-Explicit"]
                     != first.headers["X-Attributes-Explicit"]]
    assert len(other_vectors) == 3
    for query in other_vectors:
        assert get_ok(table_client, f"/api/face?seed=31&{query}").headers["ETag"] != first.headers["ETag"]


def test_face_key_is_the_vector_not_the_spelling(table_app):
    from app.cache import face_key
    from app.faces import FaceRequest, resolve

    model = table_app.extensions["facegen"].get(TABLE_MODEL)
    for seed in range(20):
        for constraints in ((), ("Smiling",), ("-Male", "-No_Beard")):
            vector = resolve(model, seed, constraints).attributes
            explicit = tuple(("" if on else "-") + n for n, on in zip(model.attributes, vector))
            assert face_key(FaceRequest(model, seed, constraints)) == face_key(FaceRequest(model, seed, explicit))
            flipped = (explicit[0][1:] if explicit[0].startswith("-") else "-" + explicit[0],) + explicit[1:]
            assert face_key(FaceRequest(model, seed, flipped)) != face_key(FaceRequest(model, seed, explicit))


BAD_ATTRS = [
    pytest.param("attrs=--Male", "more than one '-'", id="double-minus"),
    pytest.param("attrs=Male,-male", "both on and off", id="on-and-off"),
    pytest.param("attrs=Male,,Smiling", "empty attribute name", id="empty-name"),
    pytest.param("attrs=Male,", "empty attribute name", id="trailing-comma"),
    pytest.param("attrs=-", "empty attribute name", id="lone-minus"),
    pytest.param("attrs=Wings", "unknown attribute 'Wings'", id="unknown"),
    pytest.param("attrs=Male%3BSmiling", "not an attribute name", id="semicolon"),
    pytest.param(f"model={TINY_MODEL}&attrs=Young", f"attributes of model '{TABLE_MODEL}', not of '{TINY_MODEL}'",
                 id="other-models-attribute"),
]


@pytest.mark.parametrize("endpoint", ["/api/face?seed=1&", "/api/faces?seeds=1,2&", "/api/interpolate?from=1&"])
@pytest.mark.parametrize("query, problem", BAD_ATTRS)
def test_bad_attrs_are_json_400s_naming_the_problem(table_client, endpoint, query, problem):
    response = table_client.get(endpoint + query)
    assert response.status_code == 400, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json" and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert problem in body["error"] and body["error"].startswith("attrs: ") and body["allowed"], body


@pytest.mark.parametrize("parameter", ["from_attrs", "to_attrs"])
def test_interpolation_end_errors_name_their_parameter(table_client, parameter):
    body = table_client.get(f"/api/interpolate?from=1&{parameter}=Male,-Male").get_json()
    assert body["error"].startswith(f"{parameter}: 'Male' is asked both on and off"), body


def test_openapi_documents_the_attribute_headers(table_client):
    document = get_ok(table_client, "/openapi.json", mimetype="application/json").get_json()
    for path in ("/api/face", "/api/interpolate"):
        headers = document["paths"][path]["get"]["responses"]["200"]["headers"]
        assert {"X-Attributes", "X-Attributes-Explicit", "X-Attributes-Matched"} <= set(headers), path
    grid_headers = document["paths"]["/api/faces"]["get"]["responses"]["200"]["headers"]
    assert {"X-Attributes", "X-Attributes-Matched"} <= set(grid_headers) and "X-Attributes-Explicit" not in grid_headers
    attrs = next(p for p in document["paths"]["/api/face"]["get"]["parameters"] if p["name"] == "attrs")
    assert "-Name" in attrs["description"] and "nearest" in attrs["description"]


TABLE_CROSS_PROCESS_URLS = ["/api/face?seed=42", "/api/face?seed=42&attrs=Smiling,-Male",
                            "/api/face?seed=7&attrs=-Male,-No_Beard", "/api/faces?seeds=1,2,3,4&attrs=Young",
                            "/api/interpolate?from=1&to=2&steps=3&to_attrs=Eyeglasses",
                            f"/api/face?seed=42&model={TINY_MODEL}&attrs=Male"]
CHILD_WITH_HEADERS = CHILD.replace(
    "out[url] = hashlib.sha256(response.data).hexdigest()",
    "out[url] = [hashlib.sha256(response.data).hexdigest()] + [response.headers.get(h) for h in "
    "('X-Attributes', 'X-Attributes-Explicit', 'X-Attributes-Matched')]")


@pytest.mark.slow
def test_table_sampling_gives_the_same_bytes_and_attributes_in_another_process(table_client, table_models_dir):
    assert CHILD_WITH_HEADERS != CHILD
    here = {}
    for url in TABLE_CROSS_PROCESS_URLS:
        response = get_ok(table_client, url, mimetype=table_client.get(url).mimetype)
        here[url] = [sha256(response.data)] + [response.headers.get(h) for h in
                                               ("X-Attributes", "X-Attributes-Explicit", "X-Attributes-Matched")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGEN_")}
    result = subprocess.run([sys.executable, "-c", CHILD_WITH_HEADERS, str(REPO), str(table_models_dir),
                             json.dumps(TABLE_CROSS_PROCESS_URLS)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1]
    assert json.loads(line[len("RESULT "):]) == here
