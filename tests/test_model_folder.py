"""The model-folder contract (facegen.model_folder): one home that export, serving and the tools all read."""

import ast
import os
import json
from pathlib import Path

import numpy as np
import pytest

from facegen import model_folder

REPO = Path(__file__).resolve().parents[1]


def test_pixel_rule_maps_minus_one_to_zero_and_one_to_255_rounding_and_clipping():
    x = (np.array([0.0, 0.4, 0.6, 127.7, 254.6, 255.0, -3.0, 300.0]) / 127.5 - 1.0).astype(np.float32)
    assert model_folder.to_uint8(x).tolist() == [0, 0, 1, 128, 255, 255, 0, 255]


def test_the_exported_graph_rounds_exactly_as_numpy(tmp_path):
    """Export's graph and training's to_uint8 give identical pixels for the same generator output."""
    import tensorflow as tf

    x = np.random.RandomState(0).uniform(-1.2, 1.2, 4096).astype(np.float32)
    x[:9] = (np.arange(9) + 0.5) / 127.5 - 1.0  # exact halves, where rounding rules differ
    graph = model_folder.pixels_to_uint8(tf.constant(x), round=tf.round, clip=tf.clip_by_value).numpy()
    np.testing.assert_array_equal(graph.astype(np.uint8), model_folder.to_uint8(x))


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 9])
def test_every_call_into_a_model_has_call_rows_rows_and_the_padding_is_dropped(count):
    shapes = []

    def doubled(x, y):
        shapes.append((x.shape[0], y.shape[0]))
        return x * 2, y + 1

    x = np.arange(count * 3, dtype=np.float32).reshape(count, 3)
    y = np.arange(count, dtype=np.int32).reshape(count, 1)
    twice, plus_one = model_folder.in_fixed_calls(doubled, x, y)
    assert shapes and set(shapes) == {(model_folder.CALL_ROWS, model_folder.CALL_ROWS)}
    assert len(shapes) == max(1, -(-count // model_folder.CALL_ROWS))
    np.testing.assert_array_equal(twice, x * 2)
    np.testing.assert_array_equal(plus_one, y + 1)
    assert twice.dtype == np.float32 and plus_one.shape == (count, 1)


def test_a_faces_pixels_and_codes_do_not_depend_on_how_many_rows_share_the_call(encoder_models_dir):
    """CPU kernels take other paths for other batch sizes (on an AVX2 CPU a face came out one pixel off between a
    call of 1 and a call of 16): the contract's calls must not let that through to the bytes."""
    from tests.conftest import ENCODER_MODEL

    generate, loaded = model_folder.load_generate(encoder_models_dir / ENCODER_MODEL)
    encode = model_folder.load_encode(encoder_models_dir / ENCODER_MODEL, loaded)
    manifest = model_folder.read_manifest(encoder_models_dir / ENCODER_MODEL)
    stream = np.random.RandomState(3)
    noise = stream.standard_normal((24, manifest["latent_size"])).astype(np.float32) * 3
    attrs = (stream.random_sample((24, len(manifest["attributes"]))) < 0.5).astype(np.float32)
    alone = np.concatenate([generate(noise[i:i + 1], attrs[i:i + 1]) for i in range(24)])
    photos = alone[:, :, :, :].copy()
    codes_alone = [np.concatenate(part) for part in zip(*(encode(photos[i:i + 1]) for i in range(24)))]
    for size in (2, 3, 5, 7, 8, 15, 24):
        together = np.concatenate([generate(noise[k:k + size], attrs[k:k + size]) for k in range(0, 24, size)])
        np.testing.assert_array_equal(together, alone, err_msg=f"calls of {size} faces")
        codes = [np.concatenate(part) for part in zip(*(encode(photos[k:k + size]) for k in range(0, 24, size)))]
        for got, want in zip(codes, codes_alone):
            np.testing.assert_array_equal(got, want, err_msg=f"encoder calls of {size} photos")


@pytest.mark.slow  # TensorFlow in two subprocesses
def test_the_served_faces_do_not_depend_on_tensorflows_thread_count(tmp_path):
    """A service worker runs TensorFlow on the cores shared out among the workers, generate's workers on one: the
    same face must come out of both (facegen/__init__.py picks kernels whose results do not follow the threads)."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from app.models import load_model\n"
        "model = load_model(Path('models/celeba-hq-64'))\n"
        "stream = np.random.RandomState(2)\n"
        "noise = stream.standard_normal((48, model.latent_size)).astype(np.float32)\n"
        "attrs = (stream.random_sample((48, len(model.attributes))) < 0.5).astype(np.float32)\n"
        "np.save(sys.argv[1], model.generate(noise, attrs))\n")
    root = Path(__file__).resolve().parents[1]
    for threads in ("1", "2"):
        env = {**os.environ, "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # as a fresh process gets it: from facegen alone
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{threads}.npy")], cwd=root, env=env,
                       check=True, timeout=600)
    np.testing.assert_array_equal(np.load(tmp_path / "1.npy"), np.load(tmp_path / "2.npy"))


def test_seed_inputs_are_the_frozen_legacy_stream():
    from facegen import attributes

    noise, attrs, _ = attributes.seed_face(7, 4, 0.5, [0.0, 1.0, 0.5], None)
    stream = np.random.RandomState(7)
    np.testing.assert_array_equal(noise, stream.standard_normal(4).astype(np.float32) * np.float32(0.5))
    assert attrs[0] == 0.0 and attrs[1] == 1.0 and noise.dtype == attrs.dtype == np.float32


def test_build_manifest_passes_its_own_validation_and_read_back(tmp_path):
    table = model_folder.attribute_table([[1, 0], [1, 0], [0, 0]])
    manifest = model_folder.build_manifest(name="m", resolution=64, latent_size=8, attributes=["Male", "Smiling"],
                                           architecture="facegen", parameters=10, attribute_table=table,
                                           created="2026-01-01T00:00:00Z")
    assert set(manifest) == set(model_folder.MANIFEST_KEYS)
    assert manifest["signature"]["inputs"] == {"noise": [None, 8], "attrs": [None, 2]}
    model_folder.write_manifest(tmp_path, manifest)
    assert model_folder.read_manifest(tmp_path) == json.loads(json.dumps(manifest))


def test_attribute_table_counts_distinct_rows_most_frequent_first():
    rows = np.array([[0, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 1]])
    table = model_folder.attribute_table(rows)
    assert table == {"rows": ["011", "100", "000"], "counts": [3, 2, 1]}
    assert model_folder.attribute_table(np.zeros((5, 0))) == {"rows": [], "counts": []}


@pytest.mark.parametrize("change, problem", [
    ({"format": "other/1"}, "format"), ({"resolution": 0}, "resolution"), ({"latent_size": True}, "latent_size"),
    ({"attributes": ["Male", "male"]}, "unique"), ({"attributes": ["a,b"]}, "letters"),
    ({"attribute_frequencies": [0.5]}, "attribute_frequencies"),
])
def test_read_manifest_names_the_problem(tmp_path, change, problem):
    manifest = model_folder.build_manifest(name="m", resolution=64, latent_size=8, attributes=["Male", "Smiling"],
                                           architecture="facegen", parameters=10, created="x")
    manifest.update(change)
    (tmp_path / model_folder.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(model_folder.ManifestError, match=problem):
        model_folder.read_manifest(tmp_path)
    with pytest.raises(model_folder.ManifestError, match="missing"):
        model_folder.read_manifest(tmp_path / "nowhere")


@pytest.mark.parametrize("gains, problem", [
    ({"Bald": 2.0}, "does not have"), ({"Male": 9.0}, r"in \[0.5, 4\]"), ({"Male": True}, "numbers"), ([2.0], "object"),
])
@pytest.mark.parametrize("key", sorted(model_folder.EDIT_GAIN_KEYS.values()))
def test_edit_gains_are_checked_and_read_with_one_for_the_rest(tmp_path, gains, problem, key):
    template = [[0.35, 0.45], [0.65, 0.45], [0.5, 0.6], [0.38, 0.75], [0.62, 0.75]]
    encoder = model_folder.encoder_field(64, 8, 2, {"landmarks": template, "detector": "mtcnn x"})
    manifest = model_folder.build_manifest(name="m", resolution=64, latent_size=8, attributes=["Male", "Smiling"],
                                           architecture="facegen", parameters=10, created="x", encoder=encoder)
    inverted = key == model_folder.EDIT_GAIN_KEYS[True]
    np.testing.assert_array_equal(model_folder.edit_gains(manifest, inverted), [1.0, 1.0])
    manifest["encoder"][key] = {"Smiling": 2.0}
    (tmp_path / model_folder.MANIFEST).write_text(json.dumps(manifest))
    read = model_folder.read_manifest(tmp_path)
    np.testing.assert_array_equal(model_folder.edit_gains(read, inverted), [1.0, 2.0])
    np.testing.assert_array_equal(model_folder.edit_gains(read, not inverted), [1.0, 1.0])  # each kind its own
    manifest["encoder"][key] = gains
    (tmp_path / model_folder.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(model_folder.ManifestError, match=f"{key} .*{problem}"):
        model_folder.read_manifest(tmp_path)


def _imports(folder: str) -> set:
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_serving_never_imports_training_and_training_never_imports_serving():
    assert "training" not in _imports("app")
    assert "app" not in _imports("training")
    assert not {"app", "training"} & _imports("facegen")


def test_the_contract_is_not_restated():
    """The format name and the pixel rule live in facegen/model_folder.py only."""
    for folder in ("app", "training"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            assert model_folder.FORMAT not in text, path
            assert "127.5" not in text or path.name in ("batches.py", "classifier.py", "quality.py"), path


def test_architecture_doc_lists_exactly_the_manifest_keys():
    """docs/ARCHITECTURE.md's key table is checked against the contract, so the doc cannot drift from export."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    section = text[text.index("## The model folder"):]
    section = section[:section.index("\n## ", 4)] if "\n## " in section[4:] else section
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented.update(part.strip("` ") for part in line.split("|")[1].split(","))
    assert documented == set(model_folder.MANIFEST_KEYS)


def test_the_default_file_round_trips_and_an_empty_one_is_refused(tmp_path):
    assert model_folder.read_default(tmp_path) is None  # no file: the caller decides (one model, or an error)
    model_folder.write_default(tmp_path, "celeba-hq-64")
    assert (tmp_path / model_folder.DEFAULT_FILE).read_text() == "celeba-hq-64\n"
    assert model_folder.read_default(tmp_path) == "celeba-hq-64"
    (tmp_path / model_folder.DEFAULT_FILE).write_text("\n")
    with pytest.raises(model_folder.ManifestError, match="empty"):
        model_folder.read_default(tmp_path)


def test_attribute_rules_import_nothing_of_facegen_so_the_contract_imports_them_without_a_cycle():
    tree = ast.parse((REPO / "facegen" / "attributes.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.split(".")[0] == "facegen"}


def test_the_facegen_command_line_imports_only_serving_side_commands():
    """``python -m facegen`` names its commands' modules (generate lives in app/, beside serving); none is training's,
    so the one module of facegen/ that names app/ never brings the training code in."""
    tree = ast.parse((REPO / "facegen" / "__main__.py").read_text())
    table = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(getattr(target, "id", None) == "COMMANDS" for target in node.targets))
    modules = [ast.literal_eval(value)[0] for value in table.values]
    assert "app.generate" in modules and not [m for m in modules if m.split(".")[0] == "training"]


def test_no_two_modules_share_a_name_across_the_halves():
    """A module's name says which half it belongs to: app/models.py (loaded SavedModels) and a training/models.py
    (GAN state), or app/verify.py (an upload) and facegen/verify.py (the CLI), read alike in a traceback or an import
    line, so no name is used twice."""
    halves = {half: {path.stem for path in (REPO / half).glob("*.py")} - {"__init__", "__main__"}
              for half in ("app", "facegen", "training")}
    for first, second in (("app", "training"), ("facegen", "training"), ("app", "facegen")):
        assert not halves[first] & halves[second], (first, second, sorted(halves[first] & halves[second]))
