"""The 64 -> 128 upsampling stage (training/upsample.py) at 32 -> 64 px: it starts as the bilinear enlargement,
training lowers its error below bilinear's, a stopped run resumes exactly, and export puts it behind a real exported
model so serving gets faces (and encodings) at twice the side through the model-folder contract."""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from PIL import Image

from training.upsample import UpsampleConfig

SMALL, N = 32, 24  # config.py builds 32, 64 and 128 px generators: the smallest base
ATTRS = ["Male", "Smiling"]


def photo_pairs(n=N, seed=0):
    """(small uint8 [n, 16, 16, 3], large uint8 [n, 32, 32, 3]): smooth random pictures with edges (blobs and
    stripes), the small one PIL's box downsizing of the large one, as prepare's two sizes of one photo."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:2 * SMALL, 0:2 * SMALL] / (2 * SMALL)
    large = []
    for _ in range(n):
        picture = np.zeros((2 * SMALL, 2 * SMALL, 3))
        for channel in range(3):
            cx, cy, f = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(4, 12)
            picture[..., channel] = ((xx - cx) ** 2 + (yy - cy) ** 2 < 0.08) * 150 + 60 * np.sin(f * (xx + yy))
        large.append(np.clip(picture + 80, 0, 255).astype(np.uint8))
    large = np.stack(large)
    small = np.stack([np.asarray(Image.fromarray(p).resize((SMALL, SMALL), Image.Resampling.BOX)) for p in large])
    return small, large


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    from training.data import save_cache

    folder = tmp_path_factory.mktemp("pairs")
    small, large = photo_pairs()
    names = [f"{i}.jpg" for i in range(N)]
    attributes = np.zeros((N, len(ATTRS)), np.uint8)
    partition = np.zeros(N, np.uint8)
    partition[-4:] = 2  # the last four held out: training must not draw them
    for side, images in ((SMALL, small), (2 * SMALL, large)):
        save_cache(folder / f"c{side}.npz", images, attributes, ATTRS, partition, names, {"size": side})
    return folder / f"c{SMALL}.npz", folder / f"c{2 * SMALL}.npz"


def config(**overrides):
    return UpsampleConfig(**{"small": SMALL, "width": 8, "blocks": 1, "batch_size": 4, "learning_rate": 2e-3,
                             "checkpoint_every": 1000, "log_every": 5, **overrides})


def bilinear(small):
    import tensorflow as tf

    return tf.image.resize(small, (2 * SMALL, 2 * SMALL), method="bilinear").numpy()


def pixels(images):
    from facegen.model_folder import from_uint8

    return from_uint8(np.asarray(images))


def trained(tmp_path, caches, steps, name="run", cfg=None):
    from training.upsample import UpsampleRun, paired_caches

    small, large, rows = paired_caches(*caches)
    run = UpsampleRun(tmp_path / name, cfg or config())
    run.begin()
    run.train(small, large, rows, steps=steps, progress=False)
    return run


def test_the_stage_starts_as_the_bilinear_enlargement(caches):
    from training.upsample import build_upsampler

    small, _ = photo_pairs(4)
    model = build_upsampler(config())
    out = model.predict_on_batch(pixels(small))
    assert out.shape == (4, 2 * SMALL, 2 * SMALL, 3)
    np.testing.assert_allclose(out, bilinear(pixels(small)), atol=1e-5)


def test_training_beats_bilinear_on_the_pairs_and_draws_only_training_rows(tmp_path, caches):
    from training.upsample import paired_caches

    run = trained(tmp_path, caches, steps=150)
    small, large, rows = paired_caches(*caches)
    assert list(rows) == list(range(N - 4))
    x, y = pixels(small.images[rows]), pixels(large.images[rows])
    learned = np.abs(run.model.predict_on_batch(x) - y).mean()
    plain = np.abs(bilinear(x) - y).mean()
    assert learned < 0.95 * plain, (learned, plain)  # a flipped or skipped update leaves it at or above bilinear's
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0] == "step,l1,g_adversarial,d_loss,cpu_seconds" and len(log) == 1 + 150 // 5 and log[-1].startswith("150,")


def test_a_stopped_run_resumes_exactly(tmp_path, caches):
    from training.upsample import UpsampleRun, paired_caches

    whole = trained(tmp_path, caches, steps=6, name="whole")
    part = trained(tmp_path, caches, steps=3, name="part")
    part.save()
    small, large, rows = paired_caches(*caches)
    resumed = UpsampleRun(tmp_path / "part", config())
    resumed.load()
    assert resumed.step == 3
    resumed.train(small, large, rows, steps=6, progress=False)
    for a, b in zip(whole.model.weights + whole.optimizer.variables,
                    resumed.model.weights + resumed.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_the_command_refuses_what_it_cannot_use(tmp_path, caches, capsys):
    from training.__main__ import main
    from training.data import save_cache

    small, large = caches
    base = ["upsample", "--small", str(small), "--large", str(large), "--out", str(tmp_path / "u"), "--width", "8",
            "--blocks", "1", "--batch-size", "4"]
    assert main(base) == 2 and "--steps" in capsys.readouterr().err
    assert main(base + ["--resume", "--steps", "2"]) == 2 and "not an upsampling run" in capsys.readouterr().err
    assert main(["upsample", "--small", str(large), "--large", str(small), "--out", str(tmp_path / "v"),
                 "--steps", "1"]) == 2 and "twice the side" in capsys.readouterr().err
    other = tmp_path / "other.npz"
    s, _ = photo_pairs()
    save_cache(other, s, np.zeros((N, 2), np.uint8), ATTRS, np.zeros(N, np.uint8), [f"x{i}.jpg" for i in range(N)], {})
    assert main(["upsample", "--small", str(other), "--large", str(large), "--out", str(tmp_path / "w"),
                 "--steps", "1"]) == 2 and "different photos" in capsys.readouterr().err
    assert main(base[:-2] + ["--batch-size", "64", "--steps", "2"]) == 2 and "--batch-size 64" in \
        capsys.readouterr().err
    assert main(base + ["--steps", "2"]) == 0
    assert json.loads((tmp_path / "u" / "upsample.json").read_text())["small"] == SMALL
    assert main(base + ["--steps", "3"]) == 2 and "--resume" in capsys.readouterr().err
    assert main(base + ["--resume", "--steps", "3"]) == 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory, caches):
    """A 32 px exported base with an encoder and edit gains, a trained stage, and the two exported together."""
    from facegen import model_folder
    from training.export import export_random_model
    from training.upsample import export_upsampled

    folder = tmp_path_factory.mktemp("upsampled")
    base = export_random_model(folder / "models" / "base32", name="base32", resolution=SMALL, latent_size=8,
                               attributes=ATTRS, encoder=True, seed=5)
    manifest = model_folder.read_manifest(base)
    manifest["encoder"]["edit_gains"] = {"Male": 1.5}
    manifest["encoder"]["inversion_edit_gains"] = {"Male": 1.25}
    model_folder.write_manifest(base, manifest)
    run = trained(folder, caches, steps=20, name="stage")
    run.save()
    big = export_upsampled(folder / "stage", base, folder / "models" / "big64", name="big64")
    return base, big, run


def test_export_puts_the_stage_behind_the_base_generator_and_encoder(exported):
    import tensorflow as tf

    from facegen import model_folder
    from facegen.attributes import seed_face

    base, big, run = exported
    manifest = model_folder.read_manifest(big)
    assert manifest["resolution"] == 2 * SMALL and manifest["name"] == "big64"
    assert manifest["architecture"] == "facegen + upsampling stage"
    assert manifest["encoder"]["edit_gains"] == {"Male": 1.5}
    assert manifest["encoder"]["inversion_edit_gains"] == {"Male": 1.25}
    assert manifest["encoder"]["framing"]["landmarks"] == model_folder.read_manifest(base)["encoder"]["framing"][
        "landmarks"]
    assert manifest["training"]["upsampler"]["steps"] == 20 and manifest["training"]["upsampler"]["base"] == "base32"
    drawn = [seed_face(seed, 8, 1.0, manifest["attribute_frequencies"], None) for seed in range(4)]
    noise = np.stack([d[0] for d in drawn]).astype(np.float32)
    attrs = np.stack([d[1] for d in drawn]).astype(np.float32)
    small_loaded, big_loaded = tf.saved_model.load(str(base)), tf.saved_model.load(str(big))
    small_pixels = model_folder.pixels_function(small_loaded)(tf.constant(noise), tf.constant(attrs)).numpy()
    expected = model_folder.to_uint8(run.model.predict_on_batch(small_pixels))
    faces = model_folder.generate_function(big_loaded)(noise, attrs)
    assert faces.shape == (4, 2 * SMALL, 2 * SMALL, 3)
    assert np.abs(faces.astype(int) - expected).max() <= 1  # the same maths, float rounding apart
    assert not np.array_equal(faces, model_folder.to_uint8(bilinear(small_pixels)))  # the trained stage, not bilinear
    # encode takes the model's own side and gives the base encoder's codes of the 2x2 average: a picture made of
    # 2x2 blocks averages back to the small picture exactly.
    small_faces = model_folder.generate_function(small_loaded)(noise, attrs)
    blocky = small_faces.repeat(2, axis=1).repeat(2, axis=2)
    got = model_folder.load_encode(big, big_loaded)(blocky)
    want = model_folder.load_encode(base, small_loaded)(small_faces)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_the_upsampled_model_serves_at_its_side_and_refuses_an_upgrade(exported, capsys):
    from app import create_app
    from training.__main__ import main

    base, big, _ = exported
    client = create_app({"FACEGEN_MODELS_DIR": str(big.parent), "FACEGEN_MODEL": "big64"}).test_client()
    response = client.get("/api/face?seed=3&attrs=Male")
    assert response.status_code == 200, response.data[:300]
    assert Image.open(__import__("io").BytesIO(response.data)).size == (2 * SMALL, 2 * SMALL)
    listing = client.get("/api/models").get_json()
    assert {m["name"]: m["resolution"] for m in listing["models"]} == {"base32": SMALL, "big64": 2 * SMALL}
    assert main(["export", "--upgrade", str(big)]) == 2
    assert "upsampling stage" in capsys.readouterr().err


# -- the adversarial stage --------------------------------------------------------------------------------------------
def test_the_critic_learns_photos_from_enlargements_and_its_loss_reaches_the_stage(tmp_path, caches):
    from training.upsample import paired_caches

    small, large, rows = paired_caches(*caches)
    x, y = pixels(small.images[rows[:8]]), pixels(large.images[rows[:8]])

    def margin(run):  # the critic's mean logit on photos minus on the stage's enlargements
        return float(np.mean(run.critic.predict_on_batch(y)) -
                     np.mean(run.critic.predict_on_batch(run.model.predict_on_batch(x))))

    run = trained(tmp_path, caches, steps=40, name="adv", cfg=config(adversarial=1.0))
    assert margin(run) > 0.1, margin(run)  # a critic trained the wrong way round scores the enlargements higher
    log = (tmp_path / "adv" / "log.csv").read_text().splitlines()
    assert all(float(v) > 0 for v in log[-1].split(",")[1:])
    # One step from the same start with the critic's loss weighted 1 and weighted almost 0: the stage moves apart.
    steered = trained(tmp_path, caches, steps=1, name="w1", cfg=config(adversarial=1.0))
    plain = trained(tmp_path, caches, steps=1, name="w0", cfg=config(adversarial=1e-9))
    np.testing.assert_array_equal(steered.critic.weights[0].numpy(), plain.critic.weights[0].numpy())
    moved = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(steered.model.weights, plain.model.weights))
    assert moved > 1e-5, moved


def test_a_supervised_run_switched_to_adversarial_resumes_exactly(tmp_path, caches, capsys):
    from training.__main__ import main
    from training.upsample import UpsampleRun, load_upsampler

    small, large = caches

    def command(out, *extra):
        return main(["upsample", "--small", str(small), "--large", str(large), "--out", str(out), "--width", "8",
                     "--blocks", "1", "--batch-size", "4", *extra])

    for out in (tmp_path / "a", tmp_path / "b"):
        assert command(out, "--steps", "3") == 0
    assert command(tmp_path / "a", "--resume", "--adversarial", "0.5", "--steps", "7") == 0
    assert command(tmp_path / "b", "--resume", "--adversarial", "0.5", "--steps", "5") == 0
    assert command(tmp_path / "b", "--resume", "--steps", "7") == 0
    recorded = json.loads((tmp_path / "b" / "upsample.json").read_text())
    assert recorded["adversarial"] == 0.5 and recorded["changes"] == [{"adversarial": 0.5, "step": 3}]
    runs = []
    for out in (tmp_path / "a", tmp_path / "b"):
        run = UpsampleRun(out, load_upsampler(out)[2])
        run.load()
        runs.append(run)
    assert runs[0].step == runs[1].step == 7
    for a, b in zip(runs[0].model.weights + runs[0].critic.weights + runs[0].critic_optimizer.variables,
                    runs[1].model.weights + runs[1].critic.weights + runs[1].critic_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    rows = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert rows[0] == "step,l1,g_adversarial,d_loss,cpu_seconds"


def test_the_loss_curves_get_a_second_panel_once_the_run_is_adversarial(tmp_path):
    from training.pictures import plot_stage_losses

    (tmp_path / "l1.csv").write_text("step,l1,g_adversarial,d_loss,cpu_seconds\n25,0.04,,,10\n50,0.03,,,20\n")
    (tmp_path / "adv.csv").write_text((tmp_path / "l1.csv").read_text() + "75,0.03,0.7,1.4,30\n")
    one = Image.open(plot_stage_losses(tmp_path / "l1.csv", tmp_path / "l1.png"))
    two = Image.open(plot_stage_losses(tmp_path / "adv.csv", tmp_path / "adv.png"))
    assert two.size[0] > 1.8 * one.size[0]


def test_fakes_from_shows_the_critic_the_base_generators_faces(tmp_path, caches, exported, capsys):
    from training.__main__ import main

    base, big, _ = exported
    with_base = trained(tmp_path, caches, steps=2, name="fb", cfg=config(adversarial=1.0, fakes_from=str(base)))
    photos_only = trained(tmp_path, caches, steps=2, name="po", cfg=config(adversarial=1.0))
    from training.upsample import paired_caches

    small, _, rows = paired_caches(*caches)
    faces = with_base.base_faces(with_base.open_base(), small, rows)
    drawn = faces(5)
    assert drawn.shape == (4, SMALL, SMALL, 3) and np.array_equal(drawn, faces(5)) and not np.array_equal(drawn, faces(6))
    # The critic has learned from other fakes, so it (and the stage it steers) differs.
    moved = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(with_base.critic.weights,
                                                                            photos_only.critic.weights))
    assert moved > 1e-6, moved
    small, large = caches
    assert main(["upsample", "--small", str(small), "--large", str(large), "--out", str(tmp_path / "x"),
                 "--batch-size", "4", "--steps", "1", "--adversarial", "1", "--fakes-from", str(big)]) == 2
    assert "makes 64 px faces; the stage takes 32 px" in capsys.readouterr().err
    from training.data import load_cache, save_cache

    renamed = []  # the same photos with "Smiling" called something else: the base's attribute is not in the data
    for path in caches:
        cache = load_cache(path)
        renamed.append(tmp_path / path.name)
        save_cache(renamed[-1], cache.images, cache.attributes, ["Male", "Young"], cache.partition, cache.filenames, {})
    assert main(["upsample", "--small", str(renamed[0]), "--large", str(renamed[1]), "--out", str(tmp_path / "y"),
                 "--batch-size", "4", "--steps", "1", "--adversarial", "1", "--fakes-from", str(base)]) == 2
    error = capsys.readouterr().err
    assert "--fakes-from: the model's attributes ['Smiling'] are not in the data" in error
    assert not (tmp_path / "y").exists()


def test_the_ema_follows_the_weights_and_is_what_export_loads(tmp_path, caches):
    from training.upsample import UpsampleRun, load_upsampler, paired_caches

    run = trained(tmp_path, caches, steps=1, name="e0", cfg=config(ema_decay=0.75))
    start = [w.numpy().copy() for w in run.ema.weights]  # after one step: 0.75 init + 0.25 the stepped weights
    small, large, rows = paired_caches(*caches)
    run.train(small, large, rows, steps=2, progress=False)
    for average, before, weight in zip(run.ema.weights, start, run.model.weights):
        np.testing.assert_allclose(average.numpy(), 0.75 * before + 0.25 * weight.numpy(), rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a.numpy(), w.numpy()) for a, w in zip(run.ema.weights, run.model.weights))
    run.save()
    stage, meta, _ = load_upsampler(tmp_path / "e0")
    assert meta["weights"] == "ema"
    for loaded, average in zip(stage.weights, run.ema.weights):
        np.testing.assert_array_equal(loaded.numpy(), average.numpy())
    resumed = UpsampleRun(tmp_path / "e0", config(ema_decay=0.75))
    resumed.load()
    for loaded, average in zip(resumed.ema.weights, run.ema.weights):
        np.testing.assert_array_equal(loaded.numpy(), average.numpy())


def test_each_layer_starts_from_its_own_seeded_weights():
    from training.upsample import build_critic, build_upsampler

    one, again = build_upsampler(config(blocks=2)), build_upsampler(config(blocks=2))
    kernels = [w.numpy() for w in one.weights if w.path.endswith("kernel") and "tail" not in w.path]
    for a, b in zip(kernels, [w.numpy() for w in again.weights if w.path.endswith("kernel") and "tail" not in w.path]):
        np.testing.assert_array_equal(a, b)
    same_shape = [k for k in kernels if k.shape == kernels[1].shape]
    assert len(same_shape) >= 4 and all(not np.array_equal(same_shape[0], k) for k in same_shape[1:])
    other = build_upsampler(config(blocks=2, seed=1))
    assert not np.array_equal(other.weights[0].numpy(), one.weights[0].numpy())
    critic = build_critic(config())
    assert critic.output_shape == (None, SMALL // 4, SMALL // 4, 1)


def test_a_run_with_fakes_from_draws_the_base_faces_enlarged_at_every_checkpoint(tmp_path, caches, exported, capsys):
    from training.__main__ import main

    base, _, _ = exported
    small, large = caches
    out = tmp_path / "frames"
    assert main(["upsample", "--small", str(small), "--large", str(large), "--out", str(out), "--width", "8",
                 "--blocks", "1", "--batch-size", "4", "--adversarial", "0.5", "--fakes-from", str(base),
                 "--steps", "2"]) == 0
    recorded = json.loads((out / "upsample.json").read_text())
    recorded["checkpoint_every"] = 1
    (out / "upsample.json").write_text(json.dumps(recorded))
    assert main(["upsample", "--small", str(small), "--large", str(large), "--out", str(out), "--resume",
                 "--steps", "4"]) == 0
    frames = sorted((out / "samples").glob("step_*.png"))
    assert [f.name for f in frames] == ["step_00000003.png", "step_00000004.png"]
    assert Image.open(frames[0]).size == (8 * 2 * SMALL + 18, 2 * 2 * SMALL + 6)  # 16 faces at 64 px, 8 a row
    assert (out / "training.gif").is_file()
