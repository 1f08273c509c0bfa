"""training/quality.py, training/classifier.py, training/evaluate.py: metric cores on synthetic arrays, the
classifier's train/save/load round trip on a tiny cache, and `evaluate --model/--run` end to end."""

import json

import numpy as np
import pytest

from training import quality
from training.__main__ import main

NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
         "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
         "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
         "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
         "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
ATTRIBUTES = ("Male", "Eyeglasses", "Smiling")
N, SIZE = 240, 32


# -- metric cores ---------------------------------------------------------------------------------------------
def test_frechet_distance_closed_form():
    rng = np.random.RandomState(0)
    a = rng.standard_normal((4, 4))
    sigma = a @ a.T + np.eye(4)
    mu = rng.standard_normal(4)
    assert quality.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert quality.frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(float(shift @ shift), rel=1e-8)
    # Diagonal covariances: tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(s1) - sqrt(s2))^2.
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = float(np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)) + 3.0
    got = quality.frechet_distance(np.zeros(3), np.diag(s1), np.ones(3), np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-8)
    # A singular covariance (fewer samples than dimensions) still gives a finite real number.
    few = rng.standard_normal((5, 8))
    assert np.isfinite(quality.frechet_distance_of(few, few + 0.1))


def test_frechet_distance_of_samples():
    rng = np.random.RandomState(1)
    x = rng.standard_normal((4000, 3))
    assert quality.frechet_distance_of(x, x) == pytest.approx(0.0, abs=1e-6)
    y = rng.standard_normal((4000, 3)) * 2.0 + 3.0  # closed form: 3 * 3^2 + 3 * (1 - 2)^2 = 30
    assert quality.frechet_distance_of(x, y) == pytest.approx(30.0, rel=0.05)


def test_diversity_flags_collapse():
    rng = np.random.RandomState(2)
    real = rng.standard_normal((300, 16))
    real_px = rng.randint(0, 256, (300, 8, 8, 3)).astype(np.uint8)
    healthy = quality.diversity_statistics(rng.standard_normal((300, 16)), real,
                                           rng.randint(0, 256, (300, 8, 8, 3)).astype(np.uint8), real_px)
    assert not healthy["collapsed"]
    assert healthy["feature_ratio"] == pytest.approx(1.0, abs=0.1)
    assert healthy["pixel_ratio"] == pytest.approx(1.0, abs=0.1)
    same = quality.diversity_statistics(np.repeat(real[:1], 300, axis=0), real,
                                        np.repeat(real_px[:1], 300, axis=0), real_px)
    assert same["collapsed"] and same["feature_ratio"] == 0.0 and same["near_duplicate_fraction"] == 1.0
    assert same["pixel_ratio"] == 0.0
    # A few distinct faces repeated: the spread may look fine, the near-duplicate pairs give it away.
    few = np.repeat(rng.standard_normal((5, 16)) * 1.4, 60, axis=0)
    assert quality.diversity_statistics(few, real)["collapsed"]


def test_registry():
    assert {"attribute_accuracy", "attribute_accuracy_real_rows", "frechet_distance", "diversity",
            "fid_inception"} <= set(quality.METRICS)

    @quality.register(name="_test_metric")
    def anything(ctx):
        return {"value": 1}

    try:
        assert quality.METRICS["_test_metric"] is anything
    finally:
        del quality.METRICS["_test_metric"]


# -- a tiny cache where each attribute is a visible mark --------------------------------------------------------
def make_images(attributes, seed=0):
    """Dark noise; Male: a bright square top left; Eyeglasses: a bright bar across the middle; Smiling: a red
    square at the bottom right."""
    rng = np.random.RandomState(seed)
    n = len(attributes)
    images = rng.randint(0, 70, (n, SIZE, SIZE, 3)).astype(np.uint8)
    male, glasses, smiling = (attributes[:, NAMES.index(a)] == 1 for a in ATTRIBUTES)
    images[male, 2:12, 2:12] = 230
    images[glasses, 14:19, 4:28] = 250
    images[smiling, 22:30, 20:30, 0] = 255
    return images


def write_cache(path, names=NAMES, n=N, seed=0):
    from training.data import save_cache

    rng = np.random.RandomState(seed)
    attributes = (rng.random_sample((n, len(names))) < 0.4).astype(np.uint8)
    attributes[:, [j for j, name in enumerate(names) if name not in ATTRIBUTES]] = 0  # nothing to see: never on
    full = np.zeros((n, len(NAMES)), np.uint8)
    for j, name in enumerate(names):
        if name in NAMES:
            full[:, NAMES.index(name)] = attributes[:, j]
    images = make_images(full, seed)
    partition = np.zeros(n, np.uint8)
    partition[int(n * 0.75):int(n * 0.875)] = 1
    partition[int(n * 0.875):] = 2
    meta = {"source": "tests/test_evaluate.py", "layout": "test", "size": SIZE, "count": n,
            "dataset_name": "marks", "synthetic": True}
    return save_cache(path, images, attributes, list(names), partition, [f"{i:06d}.jpg" for i in range(n)], meta)


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("data") / "marks-32.npz")


@pytest.fixture(scope="module")
def classifier_path(cache_path, tmp_path_factory):
    """A classifier trained once for the module (the round trip test checks it)."""
    from training.classifier import train_classifier
    from training.data import load_cache

    classifier = train_classifier(load_cache(cache_path), epochs=12, batch_size=32, max_seconds=60, progress=False)
    return classifier.save(tmp_path_factory.mktemp("classifier") / "marks.classifier.keras")


@pytest.mark.slow
def test_classifier_round_trip(cache_path, classifier_path):
    from training.classifier import load_classifier, sidecar_path
    from training.data import load_cache

    info = json.loads(sidecar_path(classifier_path).read_text())
    assert info["attribute_names"] == NAMES and info["input_size"] == 64
    assert info["held_out"]["images"] == N // 4 and info["data"]["dataset_name"] == "marks"
    ceiling = {a: info["held_out"]["per_attribute"][a]["balanced"] for a in ATTRIBUTES}
    assert all(value > 0.9 for value in ceiling.values()), ceiling

    loaded = load_classifier(classifier_path)
    assert loaded.ceiling(list(ATTRIBUTES)) == ceiling
    cache = load_cache(cache_path)
    fresh = make_images(cache.attributes[-40:], seed=5)  # new faces drawn the same way
    features, probabilities = loaded.both(fresh)
    assert features.shape == (40, 256) and probabilities.shape == (40, 40)
    for a in ATTRIBUTES:
        j = NAMES.index(a)
        assert np.mean((probabilities[:, j] > 0.5) == (cache.attributes[-40:, j] == 1)) > 0.9, a


def test_classifier_bad_files(tmp_path):
    from training.classifier import load_classifier
    from training.usage_error import UsageError

    with pytest.raises(UsageError, match="no such file"):
        load_classifier(tmp_path / "none.keras")
    (tmp_path / "junk.keras").write_text("not a zip")
    (tmp_path / "junk.json").write_text('{"format": "facegen-classifier/1", "attribute_names": []}')
    with pytest.raises(UsageError, match="not a facegen attribute classifier"):
        load_classifier(tmp_path / "junk.keras")


# -- the command ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from training.export import export_random_model

    return export_random_model(tmp_path_factory.mktemp("models") / "tiny", name="tiny", resolution=SIZE,
                               latent_size=16, attributes=ATTRIBUTES, seed=0)


FAST = ["--samples", "64", "--attribute-samples", "32", "--no-progress"]


@pytest.mark.slow
def test_evaluate_model_writes_manifest_and_json(model_dir, cache_path, classifier_path, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", str(model_dir), "--data", str(cache_path), "--classifier",
                 str(classifier_path), "--json", str(out), "--seed", "3", *FAST])
    printed = capsys.readouterr().out
    assert code == 0, printed
    written = json.loads(out.read_text())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["metrics"] == written and manifest["format"] == "facegen-model/1"
    acc = written["attribute_accuracy"]
    assert list(acc["per_attribute"]) == list(ATTRIBUTES) and acc["samples_per_attribute"] == 32
    assert 0.0 <= acc["mean"] <= 1.0
    assert all(row["ceiling"] > 0.9 for row in acc["per_attribute"].values())
    assert written["frechet_distance"]["value"] > 0 and written["frechet_distance"]["generated"] == 64
    assert isinstance(written["diversity"]["collapsed"], bool)
    assert "skipped" in written["fid_inception"]
    assert written["classifier"]["ceiling"] == {a: row["ceiling"] for a, row in acc["per_attribute"].items()}
    assert written["samples"] == {"generated": 64, "per_attribute": 32, "real": N // 4}
    assert written["dataset"]["name"] == "marks" and written["dataset"]["images"] == N
    assert written["seed"] == 3 and written["date"].endswith("Z")
    assert written["command"].startswith("python -m training evaluate --model ")
    for text in ("attribute accuracy", "Eyeglasses", "frechet distance", "diversity", "ceiling"):
        assert text in printed

    # Same seed, same figures; --no-write leaves the manifest alone.
    (model_dir / "manifest.json").write_text(json.dumps({**manifest, "metrics": {}}))
    code = main(["evaluate", "--model", str(model_dir), "--data", str(cache_path), "--classifier",
                 str(classifier_path), "--json", str(tmp_path / "again.json"), "--seed", "3", "--no-write", *FAST])
    assert code == 0
    assert json.loads((model_dir / "manifest.json").read_text())["metrics"] == {}
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["attribute_accuracy"]["per_attribute"] == acc["per_attribute"]
    assert again["frechet_distance"]["value"] == written["frechet_distance"]["value"]


@pytest.mark.slow
def test_evaluate_run_checkpoint(cache_path, classifier_path, tmp_path, capsys):
    """--run rebuilds the generator from the checkpoint (the path a JAX machine takes); no manifest is written."""
    from training import checkpoint
    from training.config import TrainConfig
    from training.networks import build_generator

    config = TrainConfig(resolution=SIZE, latent_size=16, attributes=list(ATTRIBUTES), g_width=8, g_max_width=32,
                         d_width=8, d_max_width=32).validate()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config.save(run_dir / "config.json")
    (run_dir / "run.json").write_text(json.dumps({"attribute_frequencies": [0.4, 0.4, 0.4]}))
    weights = [np.asarray(v.numpy()) for v in build_generator(config).variables]
    checkpoint.save_state(run_dir, {"g": weights, "g_ema": weights}, {"step": 7})
    out = tmp_path / "run-metrics.json"
    code = main(["evaluate", "--run", str(run_dir), "--data", str(cache_path), "--classifier", str(classifier_path),
                 "--metrics", "attribute_accuracy,diversity", "--json", str(out), *FAST])
    assert code == 0, capsys.readouterr().out
    written = json.loads(out.read_text())
    assert set(written["attribute_accuracy"]["per_attribute"]) == set(ATTRIBUTES)
    assert "frechet_distance" not in written and "diversity" in written


@pytest.mark.slow
def test_evaluate_trains_a_classifier_beside_the_data(model_dir, tmp_path, capsys):
    cache = write_cache(tmp_path / "small-32.npz", n=64, seed=4)
    code = main(["evaluate", "--model", str(model_dir), "--data", str(cache), "--no-write",
                 "--metrics", "frechet_distance", "--classifier-epochs", "1", *FAST])
    assert code == 0, capsys.readouterr()
    saved = tmp_path / "small-32.classifier.keras"
    assert saved.is_file() and (tmp_path / "small-32.classifier.json").is_file()
    stamp = saved.stat().st_mtime_ns
    # The next evaluation on the same data reuses it instead of training again.
    code = main(["evaluate", "--model", str(model_dir), "--data", str(cache), "--no-write",
                 "--metrics", "diversity", *FAST])
    assert code == 0 and saved.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("case, message", [
    ("missing_model", "argument --model: no such model folder"),
    ("not_a_model", "manifest.json is missing"),
    ("missing_data", "argument --data: no such file or folder"),
    ("attribute_not_in_data", "'Smiling'"),
    ("unknown_metric", "unknown metric"),
    ("bad_samples", "argument --samples: must be at least 2, got 1"),
    ("missing_inception", "argument --inception-weights: no such file"),
    ("classifier_not_keras", "argument --classifier: judge.h5 must end in .keras"),
])
def test_evaluate_bad_input(case, message, model_dir, cache_path, classifier_path, tmp_path, capsys):
    args = ["evaluate", "--model", str(model_dir), "--data", str(cache_path), "--classifier", str(classifier_path),
            "--no-write", *FAST]
    if case == "missing_model":
        args[2] = str(tmp_path / "nowhere")
    elif case == "not_a_model":
        args[2] = str(tmp_path)
    elif case == "missing_data":
        args[4] = str(tmp_path / "nothing.npz")
    elif case == "attribute_not_in_data":
        args[4] = str(write_cache(tmp_path / "nosmile.npz", names=[n for n in NAMES if n != "Smiling"], n=32))
    elif case == "unknown_metric":
        args += ["--metrics", "beauty"]
    elif case == "bad_samples":
        args += ["--samples", "1"]
    elif case == "classifier_not_keras":
        args[6] = "judge.h5"
    elif case == "missing_inception":
        args += ["--inception-weights", str(tmp_path / "inception.h5")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


@pytest.mark.parametrize("faithful", [True, False])
def test_attribute_accuracy_real_rows_scores_faithfulness_to_real_requests(cache_path, classifier_path, faithful):
    """A generator that draws exactly the requested marks scores near 1; one that ignores the request near 0.5."""
    from training.classifier import load_classifier
    from training.data import load_cache

    cache = load_cache(cache_path)
    columns = [NAMES.index(a) for a in ATTRIBUTES]

    def generate(noise, attrs):  # the test data's own renderer, driven by the requested attributes (or not)
        full = np.zeros((len(noise), len(NAMES)), np.uint8)
        full[:, columns] = attrs if faithful else (np.random.RandomState(len(noise)).rand(*attrs.shape) < 0.4)
        return make_images(full, seed=int(abs(noise[0, 0]) * 1000))

    held = cache.partition > 0
    context = quality.Context(generate=generate, latent_size=4, attributes=list(ATTRIBUTES),
                              frequencies=np.full(3, 0.4), real_images=cache.images[held],
                              real_attributes=cache.attributes[held][:, columns].astype(np.float32),
                              classifier=load_classifier(classifier_path), samples=64, progress=False)
    result = quality.METRICS["attribute_accuracy_real_rows"](context)
    assert list(result["per_attribute"]) == list(ATTRIBUTES) and result["samples"] == 64
    if faithful:
        assert result["mean"] > 0.9, result
    else:
        assert 0.3 < result["mean"] < 0.7, result


# -- the encoder's figures ------------------------------------------------------------------------------------------
def test_psnr_and_centred_cosine_by_hand():
    a = np.zeros((2, 2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 12  # MSE = 144 / 12 = 12
    got = quality.psnr(a, b)
    assert got[0] == pytest.approx(10 * np.log10(255.0 ** 2 / 12.0), rel=1e-9) and got[1] == quality.PSNR_CAP
    centre = np.array([1.0, 1.0])
    cos = quality.centred_cosine(np.array([[2.0, 1.0], [2.0, 2.0]]), np.array([[3.0, 1.0], [0.0, 0.0]]), centre)
    np.testing.assert_allclose(cos, [1.0, -1.0])  # (1, 0) . (2, 0); (1, 1) . (-1, -1)


def _paint(background, attrs):
    """make_images' marks on a given background, for attributes in ATTRIBUTES order."""
    image = background.copy()
    if attrs[0] > 0.5:
        image[2:12, 2:12] = 230
    if attrs[1] > 0.5:
        image[14:19, 4:28] = 250
    if attrs[2] > 0.5:
        image[22:30, 20:30, 0] = 255
    return image


@pytest.mark.parametrize("faithful", [True, False])
def test_encoder_metrics_score_an_exact_editor_and_one_that_ignores_the_edit(cache_path, classifier_path, faithful):
    """A stand-in encoder that reads the marks off the pixels and names the photo's background by index, and a
    generator that paints the requested marks on that background: rebuilds are exact, edits change what was asked
    and keep the rest. A generator that ignores the attributes changes nothing."""
    from training.classifier import load_classifier
    from training.data import load_cache

    cache = load_cache(cache_path)
    columns = [NAMES.index(a) for a in ATTRIBUTES]
    test = np.flatnonzero(cache.partition == 2)
    labels = cache.attributes[test][:, columns].astype(np.float32)
    backgrounds = np.random.RandomState(7).randint(0, 70, (len(test), SIZE, SIZE, 3)).astype(np.uint8)
    photos = np.stack([_paint(b, a) for b, a in zip(backgrounds, labels)])
    index = {backgrounds[i, 31].tobytes(): i for i in range(len(test))}  # row 31 carries no mark

    def encode(images):
        noise = np.array([[index.get(image[31].tobytes(), 0), 0, 0, 0] for image in images], np.float32)
        found = np.stack([[image[2:12, 2:12].mean() > 200, image[14:19, 4:28].mean() > 200,
                           image[22:30, 20:30, 0].mean() > 200] for image in images]).astype(np.float32)
        return noise, np.where(found > 0, 0.9, 0.1).astype(np.float32)

    def generate(noise, attrs):
        ids = np.clip(noise[:, 0].astype(int), 0, len(test) - 1)
        if not faithful:  # the photo as it was, whatever is asked
            return photos[ids]
        return np.stack([_paint(backgrounds[i], a) for i, a in zip(ids, attrs)])

    held = cache.partition > 0
    context = quality.Context(generate=generate, latent_size=4, attributes=list(ATTRIBUTES),
                              frequencies=np.full(3, 0.4), real_images=cache.images[held],
                              real_attributes=cache.attributes[held][:, columns].astype(np.float32),
                              classifier=load_classifier(classifier_path), samples=64, progress=False,
                              encode=encode, encoder_images=photos, encoder_attributes=labels)
    found = quality.METRICS["encoder_attributes"](context)
    assert found["mean_balanced"] == 1.0 and found["photos"] == len(test)
    rebuilt = quality.METRICS["encoder_reconstruction"](context)
    assert rebuilt["psnr"] == quality.PSNR_CAP and rebuilt["feature_distance"] == 0.0
    assert rebuilt["psnr_random_code"] < 30 and rebuilt["feature_ratio"] == 0.0
    edit = quality.METRICS["encoder_edit"](context)
    assert list(edit["per_attribute"]) == list(ATTRIBUTES)
    if faithful:
        assert edit["changed"] > 0.9 and edit["kept"] > 0.9 and edit["success"] > 0.8, edit
        assert edit["identity"]["rebuild_photo"] == pytest.approx(1.0)
    else:
        assert edit["changed"] < 0.1 and edit["kept"] == 1.0 and edit["success"] < 0.1, edit
        assert edit["identity"]["edit_rebuild"] == pytest.approx(1.0)
    assert edit["identity"]["different_photos"] < 0.9


@pytest.fixture(scope="module")
def encoder_model_dir(tmp_path_factory):
    from training.export import export_random_model

    return export_random_model(tmp_path_factory.mktemp("models") / "tiny-enc", name="tiny-enc", resolution=SIZE,
                               latent_size=16, attributes=ATTRIBUTES, seed=0, encoder=True)


ENCODER_METRICS = "encoder_attributes,encoder_reconstruction,encoder_edit"


@pytest.mark.slow
def test_evaluate_writes_the_encoder_figures(encoder_model_dir, model_dir, cache_path, classifier_path, tmp_path,
                                             capsys):
    code = main(["evaluate", "--model", str(encoder_model_dir), "--data", str(cache_path), "--classifier",
                 str(classifier_path), "--metrics", ENCODER_METRICS, "--encoder-samples", "16",
                 "--edit-attributes", "Smiling,male", *FAST])
    printed = capsys.readouterr().out
    assert code == 0, printed
    written = json.loads((encoder_model_dir / "manifest.json").read_text())["metrics"]
    assert written["samples"]["encoded"] == 16 and written["samples"]["encoded_from"] == "test partition"
    assert set(written["encoder_attributes"]["per_attribute"]) == set(ATTRIBUTES)
    rebuilt = written["encoder_reconstruction"]
    assert 0 < rebuilt["psnr"] < quality.PSNR_CAP and rebuilt["photos"] == 16 and rebuilt["feature_ratio"] > 0
    edit = written["encoder_edit"]
    assert list(edit["per_attribute"]) == ["Smiling", "Male"] and 0 <= edit["changed"] <= 1
    for text in ("encoder reconstruction: PSNR", "encoder edits", "Smiling: changed"):
        assert text in printed
    # A model without an encoder: the figures say why they are absent.
    code = main(["evaluate", "--model", str(model_dir), "--data", str(cache_path), "--classifier",
                 str(classifier_path), "--metrics", ENCODER_METRICS, "--no-write", "--json",
                 str(tmp_path / "plain.json"), *FAST])
    assert code == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert all(plain[m] == {"skipped": "the model has no encoder", "seconds": plain[m]["seconds"]}
               for m in ENCODER_METRICS.split(","))
    assert main(["evaluate", "--model", str(encoder_model_dir), "--data", str(cache_path), "--classifier",
                 str(classifier_path), "--edit-attributes", "Bald", "--no-write", *FAST]) == 2
    assert "--edit-attributes: ['Bald']" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_run_with_an_encoder_uses_its_checkpoint(cache_path, classifier_path, tmp_path, capsys):
    from training import checkpoint
    from training.config import TrainConfig
    from training.networks import build_encoder, build_generator

    config = TrainConfig(resolution=SIZE, latent_size=16, attributes=list(ATTRIBUTES), g_width=8, g_max_width=32,
                         d_width=8, d_max_width=32, encoder=True).validate()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config.save(run_dir / "config.json")
    weights = [np.asarray(v.numpy()) for v in build_generator(config).variables]
    encoder = [np.asarray(v.numpy()) for v in build_encoder(config).variables]
    checkpoint.save_state(run_dir, {"g": weights, "g_ema": weights, "e": encoder}, {"step": 3})
    out = tmp_path / "run-metrics.json"
    code = main(["evaluate", "--run", str(run_dir), "--data", str(cache_path), "--classifier", str(classifier_path),
                 "--metrics", "encoder_reconstruction", "--encoder-samples", "8", "--json", str(out), *FAST])
    assert code == 0, capsys.readouterr().out
    assert json.loads(out.read_text())["encoder_reconstruction"]["photos"] == 8


# -- the identity metric's inputs and what a run without it leaves in the manifest --------------------------------
def test_a_metric_skipped_now_keeps_the_figure_a_previous_measurement_wrote():
    from training.evaluate import kept_figures

    before = {"identity": {"rebuilt": {"same_person": 1.0}}, "frechet_distance": {"value": 9.0},
              "encoder_edit": {"skipped": "no encoder"}}
    report = {"identity": {"skipped": "no photos"}, "frechet_distance": {"value": 4.0},
              "encoder_edit": {"skipped": "still no encoder"}, "date": "now"}
    merged = kept_figures(before, report)
    assert merged["identity"] == before["identity"]  # kept: not measured this time
    assert merged["frechet_distance"] == {"value": 4.0}  # measured again: the new figure
    assert merged["encoder_edit"] == report["encoder_edit"] and merged["date"] == "now"
    assert kept_figures({}, report) == report


def test_identity_photos_are_test_partition_files_and_a_missing_one_names_the_flag(cache_path, tmp_path):
    from types import SimpleNamespace

    from training.data import TEST, load_cache
    from training.evaluate import identity_photo_files
    from training.usage_error import UsageError

    cache = load_cache(cache_path)
    args = SimpleNamespace(photos=tmp_path, model=tmp_path, identity_photos=5)
    with pytest.raises(UsageError, match="--photos"):
        identity_photo_files(args, cache)
    for name in cache.filenames:
        (tmp_path / str(name)).write_bytes(b"")
    paths = identity_photo_files(args, cache)
    rows = {str(name): part for name, part in zip(cache.filenames, cache.partition)}
    assert len(paths) == 5 and all(rows[p.name] == TEST for p in paths)
    assert identity_photo_files(SimpleNamespace(photos=None, model=tmp_path, identity_photos=5), cache) is None
