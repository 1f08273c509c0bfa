"""The model the repository ships as its default (models/DEFAULT): what `make run` serves on a fresh clone.

It must be a real-face model that says what it was trained on and under which terms, carry its measured figures and
card, stay small enough for git (no checkpoints or optimizer state), and serve faces and photo edits.
"""

import io
from pathlib import Path

import pytest
from PIL import Image

from facegen import model_folder
from tests.conftest import CELEBA_HQ

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED_SUFFIXES = {".pb", ".json", ".md", ".png", ".gif"}  # plus variables/ and assets/: the SavedModel's own
SIZE_LIMIT_BYTES = 20 * 1024 * 1024


def default_model() -> Path:
    return MODELS / (MODELS / model_folder.DEFAULT_FILE).read_text().split()[0]


def test_the_default_model_is_trained_on_real_photographs_and_names_their_terms():
    manifest = model_folder.read_manifest(default_model())
    model_folder.validate_manifest(manifest, default_model())
    dataset = manifest["dataset"]
    assert dataset["synthetic"] is False and dataset["layout"] == "celebamask-hq"
    assert "non-commercial research" in dataset["licence"]
    assert dataset["split"]["kind"] == "celeba-official" and dataset["split"]["identity_disjoint"] is True
    assert manifest["attribute_table"] and manifest["encoder"] is not None
    for needed in ("Male", "Young", "Smiling", "Eyeglasses", "Wearing_Hat", "Bald", "Black_Hair", "Blond_Hair",
                   "Brown_Hair", "Gray_Hair", "No_Beard", "Mustache", "Wearing_Lipstick", "Bangs", "Pale_Skin",
                   "Mouth_Slightly_Open"):
        assert needed in manifest["attributes"], needed
    metrics = manifest["metrics"]
    for figure in ("attribute_accuracy", "attribute_accuracy_real_rows", "frechet_distance", "diversity",
                   "encoder_attributes", "encoder_reconstruction", "encoder_edit"):
        assert figure in metrics, figure
    assert metrics["diversity"]["collapsed"] is False


def test_the_default_models_card_shows_its_pictures_and_terms():
    folder = default_model()
    card = (folder / model_folder.CARD).read_text()
    assert "non-commercial research" in card and "Frechet distance" in card
    for picture in ("samples.png", "attributes.png", "edits.png", "loss_curves.png"):
        assert f"]({picture})" in card and (folder / picture).is_file(), picture


def test_the_default_model_folder_is_small_and_holds_no_training_state():
    folder = default_model()
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < SIZE_LIMIT_BYTES
    for path in files:
        relative = path.relative_to(folder)
        assert relative.parts[0] in ("variables", "assets") or path.suffix in SHIPPED_SUFFIXES, relative
        assert "checkpoint" not in path.name and not path.name.endswith(".npz"), relative


@pytest.fixture(scope="module")
def bundled_client():
    from app import create_app

    return create_app({"FACEGEN_MODELS_DIR": str(MODELS), "TESTING": True}).test_client()


@pytest.mark.slow
def test_the_service_serves_the_default_model_by_default(bundled_client):
    listing = bundled_client.get("/api/models").get_json()
    assert listing["default"] == default_model().name
    first = bundled_client.get("/api/face?seed=42&attrs=Male,Eyeglasses")
    assert first.status_code == 200 and first.mimetype == "image/png"
    image = Image.open(io.BytesIO(first.data))
    resolution = model_folder.read_manifest(default_model())["resolution"]
    assert image.size == (resolution, resolution)
    assert {"Male", "Eyeglasses"} <= set(first.headers["X-Attributes"].split(","))
    assert bundled_client.get("/api/face?seed=42&attrs=Male,Eyeglasses").data == first.data


def _post_photo(client, path, number):
    return client.post(path, data={"image": (io.BytesIO((CELEBA_HQ / f"{number}.jpg").read_bytes()), f"{number}.jpg")},
                       content_type="multipart/form-data")


@pytest.mark.slow
def test_the_default_model_reads_and_edits_real_photos(bundled_client):
    """CelebA-HQ portraits read in place from the shared folder (never copied into the repository): the encoder finds
    their labelled sex most of the time, and an edit comes back with the asked attribute on."""
    if not CELEBA_HQ.is_dir():
        pytest.skip(f"CelebA-HQ photos not found at {CELEBA_HQ}")
    lines = (CELEBA_HQ.parent / "CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()
    male = lines[1].split().index("Male")
    labels = {int(line.split()[0].split(".")[0]): line.split()[1 + male] == "1" for line in lines[2:22]}
    agree = 0
    for number, is_male in labels.items():
        found = _post_photo(bundled_client, "/api/encode", number).get_json()
        agree += (found["attributes"]["Male"] >= 0.5) == is_male
    assert agree >= 0.75 * len(labels), f"Male read right on {agree} of {len(labels)} photos"
    response = _post_photo(bundled_client, "/api/edit?attrs=Smiling&format=json", 3)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["model"] == default_model().name and "Smiling" in body["attrs"].split(",")
    assert body["images"]["edited"].startswith("data:image/png;base64,")
