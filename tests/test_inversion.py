"""facegen/inversion.py and the float signature it optimises through, on the tiny exported model with an encoder
(tests/conftest.py's 'tiny-enc', untrained): the export contract's generate_pixels agrees with the uint8 faces,
export --upgrade keeps the uint8 bytes (and refuses a rebuild that does not), and per-photo inversion brings the
rebuild closer to the photo than the encoder alone, deterministically, without touching the served weights."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import ENCODER_MODEL


@pytest.fixture(scope="module")
def model_dir(encoder_models_dir):
    return encoder_models_dir / ENCODER_MODEL


def inputs(latent, attributes, count=6, seed=0):
    rng = np.random.RandomState(seed)
    return (rng.standard_normal((count, latent)).astype(np.float32),
            (rng.uniform(size=(count, attributes)) > 0.5).astype(np.float32))


def test_the_float_signature_agrees_with_the_uint8_faces_under_the_pixel_rule(model_dir):
    import tensorflow as tf

    from facegen import model_folder

    manifest = model_folder.read_manifest(model_dir)
    assert model_folder.has_pixels(manifest)
    assert manifest["signature"]["pixels"]["output"]["pixels"] == [None, 32, 32, 3]
    generate, loaded = model_folder.load_generate(model_dir)
    assert model_folder.PIXELS_SIGNATURE in loaded.signatures
    noise, attrs = inputs(manifest["latent_size"], len(manifest["attributes"]))
    pixels = model_folder.pixels_function(loaded)(tf.constant(noise), tf.constant(attrs)).numpy()
    assert pixels.dtype == np.float32 and pixels.min() >= -1 and pixels.max() <= 1
    assert np.array_equal(model_folder.to_uint8(pixels), generate(noise, attrs))
    signed = loaded.signatures[model_folder.PIXELS_SIGNATURE](noise=tf.constant(noise), attrs=tf.constant(attrs))
    assert np.array_equal(signed["pixels"].numpy(), pixels)


@pytest.mark.slow
def test_upgrade_keeps_the_uint8_bytes_and_refuses_a_rebuild_that_does_not(model_dir, tmp_path, monkeypatch):
    from facegen import model_folder
    from training import export

    folder = tmp_path / "old"
    shutil.copytree(model_dir, folder)
    manifest = model_folder.read_manifest(folder)
    # As a model exported before the float signature says it: no "pixels" in its signature object.
    del manifest["signature"]["pixels"]
    model_folder.write_manifest(folder, manifest)
    noise, attrs = inputs(manifest["latent_size"], len(manifest["attributes"]), count=16, seed=1)
    before = model_folder.load_generate(folder)[0](noise, attrs)

    rebuild = export.rebuild_networks

    def off_by_a_little(model_dir):  # the mutation: one bias nudged, as a wrong layer mapping would
        generator, encoder, config = rebuild(model_dir)
        generator.to_rgb.bias.assign(generator.to_rgb.bias + 0.02)
        return generator, encoder, config

    monkeypatch.setattr(export, "rebuild_networks", off_by_a_little)
    saved_bytes = (folder / model_folder.SAVED_MODEL).read_bytes()
    with pytest.raises(RuntimeError, match="differs"):
        export.upgrade_model(folder, seeds=8)
    assert (folder / model_folder.SAVED_MODEL).read_bytes() == saved_bytes  # nothing replaced
    assert not model_folder.has_pixels(model_folder.read_manifest(folder))

    monkeypatch.setattr(export, "rebuild_networks", rebuild)
    assert export.upgrade_model(folder, seeds=8) == {"seeds": 8, "encoder": True}
    upgraded = model_folder.read_manifest(folder)
    assert model_folder.has_pixels(upgraded)
    assert {k: v for k, v in upgraded.items() if k != "signature"} == \
        {k: v for k, v in manifest.items() if k != "signature"}
    assert np.array_equal(model_folder.load_generate(folder)[0](noise, attrs), before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".old.")]  # no staging folder left behind
    json.loads((folder / model_folder.MANIFEST).read_text())


@pytest.fixture(scope="module")
def photo(model_dir):
    """A face the tiny generator can make (its own output for other inputs), and the encoder's guess at it."""
    from facegen import model_folder

    manifest = model_folder.read_manifest(model_dir)
    generate, loaded = model_folder.load_generate(model_dir)
    noise, attrs = inputs(manifest["latent_size"], len(manifest["attributes"]), count=1, seed=3)
    framed = generate(noise, attrs)[0]
    code, probabilities = model_folder.load_encode(model_dir, loaded)(framed[None])
    return framed, code[0], (probabilities[0] >= 0.5).astype(np.float32), generate


def squared_error(a, b):
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@pytest.mark.slow
def test_inversion_rebuilds_the_photo_closer_than_the_encoder_alone(model_dir, photo):
    from facegen import inversion

    framed, code, found, generate = photo
    encoder_only = squared_error(generate(code[None], found[None])[0], framed)
    for settings in (inversion.Settings(latent_steps=20, tune_steps=0), inversion.Settings(latent_steps=0,
                                                                                        tune_steps=20)):
        # Each stage on its own must help: a stage whose update is skipped, or whose loss sign is flipped, fails.
        rebuilt = inversion.Inverter(model_dir, settings).invert(framed, code, found).rebuilt
        assert squared_error(rebuilt, framed) < 0.8 * encoder_only, settings
    both = inversion.Inverter(model_dir, inversion.Settings(latent_steps=20, tune_steps=20))
    assert squared_error(both.invert(framed, code, found).rebuilt, framed) < 0.5 * encoder_only


@pytest.mark.slow
def test_inversion_is_deterministic_and_never_touches_the_served_weights(model_dir, photo):
    from facegen import inversion

    framed, code, found, generate = photo
    noise, attrs = inputs(code.shape[0], found.shape[0], count=4, seed=5)
    served = generate(noise, attrs)
    inverter = inversion.Inverter(model_dir, inversion.Settings(latent_steps=10, tune_steps=10))
    flipped = found.copy()
    flipped[0] = 1 - flipped[0]
    edits = inversion.edit_vectors(found, flipped)
    first = inverter.invert(framed, code, found, edits)
    again = inverter.invert(framed, code, found, edits)
    assert np.array_equal(first.rebuilt, again.rebuilt) and np.array_equal(first.edits[0], again.edits[0])
    assert not np.array_equal(first.edits[0], first.rebuilt)  # the flip changed something
    # Reset after each photo (else the second photo would start from the first one's tuned copy, as the bytes show).
    assert all(np.array_equal(v.numpy(), e) for v, e in zip(inverter._weights, inverter._exported))
    assert np.array_equal(generate(noise, attrs), served)  # the served instance is another SavedModel object
    # A tuned copy from another process-level Inverter gives the same bytes.
    other = inversion.Inverter(model_dir, inversion.Settings(latent_steps=10, tune_steps=10))
    assert np.array_equal(other.invert(framed, code, found, edits).edits[0], first.edits[0])


@pytest.mark.slow
def test_a_pushed_value_reaches_the_tuned_copy_even_at_minus_one(model_dir, photo):
    """An attribute that is on, edited off with a gain of 2, is set to -1: the edit must differ from the unpushed
    one (0) and from the rebuild (which "keep" would give)."""
    from facegen import inversion

    framed, code, found, _ = photo
    flipped = found.copy()
    j = int(np.flatnonzero(found == 1)[0])
    flipped[j] = 0
    edits = np.concatenate([inversion.edit_vectors(found, flipped), inversion.edit_vectors(found, flipped, 2.0)])
    assert edits[1, j] == -1
    result = inversion.Inverter(model_dir, inversion.Settings(latent_steps=5, tune_steps=5)).invert(
        framed, code, found, edits)
    plain, pushed = (face.astype(int) for face in result.edits)
    assert np.abs(pushed - plain).mean() > 0.5 and np.abs(pushed - result.rebuilt).mean() > 0.5


def test_edit_vectors_set_only_what_the_edit_changes_pushed_by_the_gains():
    from facegen.inversion import edit_vectors

    found = np.array([1, 0, 1, 0], np.float32)
    edited = np.array([1, 1, 0, 0], np.float32)
    np.testing.assert_array_equal(edit_vectors(found, edited), [[np.nan, 1, 0, np.nan]])
    # off -> g, on -> 1 - g; a gain of 2 sets -1, which must not read as "keep"
    np.testing.assert_array_equal(edit_vectors(found, edited, 2.0), [[np.nan, 2, -1, np.nan]])
    np.testing.assert_array_equal(edit_vectors(found, edited, [3, 1.5, 1, 3]), [[np.nan, 1.5, 0, np.nan]])


