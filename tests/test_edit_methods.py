"""facegen/edit_methods.py: the one catalogue of edit methods that /api/edit serves and training/identity.py
measures, and the identity Editor applying it to a photo exactly as the service does."""

import io

import numpy as np
import pytest
from PIL import Image

from facegen import attributes, edit_methods, photo_edit


def test_the_served_methods_depend_on_the_encoder_and_the_float_signature():
    assert edit_methods.served(False, True) == []
    assert edit_methods.served(True, False) == ["photo", "generator"]
    assert edit_methods.served(True, True) == ["photo", "generator", "pti", "pti-photo"]
    assert "latent" in edit_methods.METHODS and "latent" not in edit_methods.SERVED  # measured, never served
    assert edit_methods.default(True) == "pti-photo" and edit_methods.default(False) == "photo"
    # Each kind of edit gain reaches the served methods of its kind (the card names them).
    assert edit_methods.with_inversion(True) == ["pti", "pti-photo"]
    assert edit_methods.with_inversion(False) == ["photo", "generator"]


def test_the_encoder_outputs_become_the_generators_inputs_by_one_rule():
    noise, probabilities, found = edit_methods.encoder_inputs(
        np.array([0.123456, -1.00004, 2.0], np.float32),
        np.array([attributes.ON_THRESHOLD, attributes.ON_THRESHOLD - 1e-4, 1.3, -0.2], np.float32))
    np.testing.assert_allclose(noise, [0.1235, -1.0, 2.0], atol=1e-7)
    assert noise.dtype == np.float32 and found.dtype == np.float32
    np.testing.assert_array_equal(found, [1, 0, 1, 0])  # on at the threshold itself
    np.testing.assert_allclose(probabilities, [0.5, 0.4999, 1.0, 0.0], atol=1e-6)
    # Float noise from another batch size (the last bits) reaches the generator as the same value.
    again, _, _ = edit_methods.encoder_inputs(np.array([0.12345601, -1.0000401, 2.0000002]), [0.5, 0.4, 1.0, 0.0])
    np.testing.assert_array_equal(again, noise)


def test_each_method_shows_its_own_face_and_is_compared_with_its_own_unedited_face():
    rng = np.random.RandomState(0)
    framed, generated, rebuilt = (rng.randint(0, 256, (16, 16, 3)).astype(np.uint8) for _ in range(3))
    onto = photo_edit.photo_edit(framed, generated, rebuilt)
    assert not np.array_equal(onto, generated)
    for name in ("photo", "pti-photo"):
        np.testing.assert_array_equal(edit_methods.edited_face(name, framed, generated, rebuilt), onto)
        assert edit_methods.unedited(name) == "framed"
    for name, base in (("generator", "encoder"), ("latent", "latent"), ("pti", "pti")):
        np.testing.assert_array_equal(edit_methods.edited_face(name, framed, generated, rebuilt), generated)
        assert edit_methods.unedited(name) == base


@pytest.mark.slow
@pytest.mark.parametrize("method", ["photo", "generator", "pti-photo"])
def test_the_identity_figures_measure_the_bytes_the_service_answers_with(encoder_models_dir, encoder_client,
                                                                       celeba_photo, method):
    """training/identity.py's Editor on a photo against /api/edit on the same photo and flip: the same face."""
    from facegen import model_folder
    from tests.conftest import ENCODER_MODEL
    from training.identity import Editor

    data = celeba_photo(6)
    with Image.open(io.BytesIO(data)) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    model_dir = encoder_models_dir / ENCODER_MODEL
    manifest = model_folder.read_manifest(model_dir)
    names = list(manifest["attributes"])
    found = encoder_client.post("/api/encode", data=data, content_type="image/jpeg").get_json()["found"].split(",")
    state = {name.lstrip("-"): not name.startswith("-") for name in found}
    column = 0
    flip = ("-" if state[names[column]] else "") + names[column]
    response = encoder_client.post(f"/api/edit?attrs={flip}&view=edited&method={method}", data=data,
                                   content_type="image/jpeg")
    assert response.status_code == 200, response.data[:300]
    with Image.open(io.BytesIO(response.data)) as image:
        served = np.asarray(image.convert("RGB"))
    measured = Editor(model_dir, manifest, [method]).edit(pixels, [column])
    assert measured["targets"] == [0.0 if state[names[column]] else 1.0]
    np.testing.assert_array_equal(measured["edited"][method][0], served)


def test_the_two_thresholds_one_for_attribute_vectors_one_for_the_judge():
    """An attribute vector (0/1, pushed by a gain, or the encoder's probabilities) is on from ON_THRESHOLD up; the
    evaluation judge reads an attribute only above READ_ON. Every figure counts through these two."""
    from training.classifier import READ_ON, reads_on

    threshold = attributes.ON_THRESHOLD
    np.testing.assert_array_equal(attributes.is_on([threshold - 1e-4, threshold, 1.75, -0.75]),
                                  [False, True, True, False])
    np.testing.assert_array_equal(reads_on([[READ_ON - 1e-4, READ_ON, READ_ON + 1e-4]]), [[False, False, True]])
