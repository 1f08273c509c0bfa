"""The training package end to end on `synth` data, on the CPU: train, resume, export, load, bad input.

Every run is real: the project's own synth renderer, prepare cache, train loop, checkpoint and export, with a
network shrunk so a few 64x64 steps take seconds on two cores.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main

REPO = Path(__file__).resolve().parents[1]

# A 64x64 generator small enough for CI; everything else is the default config.
TINY_CONFIG = {
    "resolution": 64, "latent_size": 16, "attributes": ["Male", "Eyeglasses", "Smiling"],
    "g_width": 4, "g_max_width": 16, "d_width": 4, "d_max_width": 16, "batch_size": 8,
    "log_every": 2, "checkpoint_every": 3, "ema_start": 2, "sample_grid": 2,
    "instance_noise": 0.1, "label_flip": 0.05, "d_steps": 2, "d_accuracy_threshold": 0.95,
}


@pytest.fixture(scope="module")
def synth_cache(tmp_path_factory):
    """A 64 px cache prepared by the project's own `synth` + `prepare` commands."""
    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(root / "faces"), "--count", "96", "--seed", "3", "--no-progress"]) == 0
    cache = root / "faces-64.npz"
    assert main(["prepare", "--data", str(root / "faces"), "--out", str(cache), "--size", "64",
                 "--no-progress"]) == 0
    return cache


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return path


def _train(cache, run_dir, config_file, *extra):
    return main(["train", "--data", str(cache), "--out", str(run_dir), "--config", str(config_file),
                 "--no-progress", *extra])


def _log_steps(run_dir):
    with open(run_dir / "log.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_train_writes_run_and_export_loads_with_plain_tensorflow(synth_cache, config_file, tmp_path):
    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--steps", "6") == 0

    assert (run_dir / "checkpoint" / "state.npz").is_file()
    assert json.loads((run_dir / "config.json").read_text())["resolution"] == 64
    info = json.loads((run_dir / "run.json").read_text())
    assert info["dataset"]["name"] == "synth" and info["dataset"]["synthetic"] is True
    assert len(info["attribute_frequencies"]) == 3
    assert _log_steps(run_dir) == [2, 4, 6]
    with open(run_dir / "log.csv") as f:
        assert all(np.isfinite(float(row["d_loss"])) and np.isfinite(float(row["g_loss"])) for row in csv.DictReader(f))
    from PIL import Image

    width, height = Image.open(run_dir / "samples" / "step_00000006.png").size
    assert width == height and 2 * 64 <= width < 2 * 64 + 16  # a 2x2 grid of 64 px faces with thin gutters
    assert Image.open(run_dir / "loss_curves.png").size[0] > 100
    assert Image.open(run_dir / "training.gif").format == "GIF"

    model_dir = tmp_path / "models" / "tiny64"
    assert main(["export", "--run", str(run_dir), "--out", str(model_dir), "--name", "tiny64"]) == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["name"] == "tiny64" and manifest["resolution"] == 64 and manifest["latent_size"] == 16
    assert manifest["attributes"] == ["Male", "Eyeglasses", "Smiling"]
    assert manifest["dataset"]["synthetic"] is True and manifest["training"]["steps"] == 6

    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    noise = np.random.RandomState(0).standard_normal((5, 16)).astype(np.float32)
    attrs = np.zeros((5, 3), np.float32)
    images = loaded.signatures["serving_default"](noise=tf.constant(noise), attrs=tf.constant(attrs))["images"]
    assert images.dtype == tf.uint8 and tuple(images.shape) == (5, 64, 64, 3)
    # The exported generator is the run's EMA generator, so export is faithful to what training sampled.
    assert images.numpy().std() > 0


@pytest.mark.slow
def test_a_script_drives_the_loop_with_plain_values(synth_cache, tmp_path, capsys):
    """Training takes values, not argparse's Namespace: the loop runs without the command line, as train's does."""
    from training import checkpoint, run_folder
    from training.config import TrainConfig
    from training.loop import Training

    run_dir = tmp_path / "run"
    config = TrainConfig(**TINY_CONFIG).validate()
    assert Training(config, run_dir, synth_cache, steps=4, sample_every=1000, progress=False).run() == 0
    assert checkpoint.load_state(run_dir)[1]["step"] == 4
    assert [run_folder.sample_step(path) for path in run_folder.sample_frames(run_dir)] == [4]  # the final grid
    assert run_folder.read_run_info(run_dir)["dataset"]["images"] > 0
    assert Training(config, run_dir, synth_cache, resume=True, steps=6, progress=False).run() == 0
    assert checkpoint.load_state(run_dir)[1]["step"] == 6
    assert f"resuming {run_dir} at step 4" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_continues_where_the_checkpoint_left_off(synth_cache, config_file, tmp_path):
    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--steps", "4") == 0
    assert _train(synth_cache, run_dir, config_file, "--steps", "8", "--resume") == 0
    assert _log_steps(run_dir) == [2, 4, 6, 8]
    from training.checkpoint import load_state

    assert load_state(run_dir)[1]["step"] == 8


@pytest.mark.slow
def test_resume_after_a_killed_run_loses_at_most_checkpoint_every(synth_cache, config_file, tmp_path):
    """SIGKILL (no chance to save) mid-run, then --resume: the run restarts from the last periodic checkpoint."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "training", "train", "--data", str(synth_cache), "--out", str(run_dir),
               "--config", str(config_file), "--steps", "100000", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "log.csv").is_file() or max(_log_steps(run_dir) or [0]) < 8:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    from training.checkpoint import load_state

    saved_step = int(load_state(run_dir)[1]["step"])
    logged = max(_log_steps(run_dir))
    assert saved_step % TINY_CONFIG["checkpoint_every"] == 0 and logged - saved_step < TINY_CONFIG["checkpoint_every"] + 2
    assert _train(synth_cache, run_dir, config_file, "--steps", str(saved_step + 2), "--resume") == 0
    assert int(load_state(run_dir)[1]["step"]) == saved_step + 2
    steps = _log_steps(run_dir)  # the rows logged after the checkpoint and then lost are not repeated
    assert steps == sorted(set(steps)) and steps[-1] == saved_step + 2, steps


def _checkpoint_arrays(run_dir):
    from training.checkpoint import load_state

    return load_state(run_dir)[0]


@pytest.mark.slow
def test_resume_is_exact(synth_cache, config_file, tmp_path):
    """3 steps + resume to 6 ends in exactly the state of 6 steps in one go: weights, optimiser slots, EMA and D's
    running accuracy (the accuracy schedule's state) alike."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(synth_cache, straight, config_file, "--steps", "6") == 0
    assert _train(synth_cache, resumed, config_file, "--steps", "3") == 0
    assert _train(synth_cache, resumed, config_file, "--steps", "6", "--resume") == 0
    a, b = _checkpoint_arrays(straight), _checkpoint_arrays(resumed)
    assert set(a) == set(b) and "schedule" in a
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7, err_msg=name)
    assert 0.0 < float(a["schedule"][0]) < 1.0 and float(a["schedule"][0]) != 0.5


@pytest.mark.slow
def test_log_forgets_steps_lost_to_a_kill(synth_cache, config_file, tmp_path):
    """A run killed after logging past its last checkpoint: resume drops those rows, grids and events, so the log
    says each step once."""
    import shutil

    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--steps", "3") == 0
    saved = tmp_path / "state-at-3.npz"
    shutil.copy(run_dir / "checkpoint" / "state.npz", saved)
    assert _train(synth_cache, run_dir, config_file, "--steps", "8", "--resume") == 0
    shutil.copy(saved, run_dir / "checkpoint" / "state.npz")  # as if killed after step 8 was logged, saved at 3
    assert _train(synth_cache, run_dir, config_file, "--steps", "10", "--resume") == 0
    assert _log_steps(run_dir) == [2, 3, 4, 6, 8, 10]  # 3: the first session's last step
    events = _tensorboard_scalars(run_dir, "train/d_loss")
    assert [step for step, _ in events] == [2, 3, 4, 6, 8, 10]


def _tensorboard_scalars(run_dir, tag):
    """(step, value) of ``tag`` as TensorBoard shows it: the last write of each step, after purges."""
    import tensorflow as tf

    values = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                values = {s: v for s, v in values.items() if s < event.step}  # purge_step: forget what followed
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = value.simple_value
    return sorted(values.items())


@pytest.mark.slow
def test_tensorboard_gets_scalars_and_the_sample_grid(synth_cache, config_file, tmp_path):
    import tensorflow as tf

    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--epochs", "1") == 0
    steps = _log_steps(run_dir)
    for tag in ("train/d_loss", "train/g_loss", "train/d_accuracy", "train/images_per_second"):
        assert [s for s, _ in _tensorboard_scalars(run_dir, tag)] == steps, tag
    images = [event.step for path in (run_dir / "tensorboard").glob("events.out.tfevents.*")
              for event in tf.compat.v1.train.summary_iterator(str(path))
              for value in event.summary.value if value.tag == "samples" and value.HasField("image")]
    assert images and max(images) == steps[-1]


def test_resume_rewrites_a_log_with_older_columns(tmp_path):
    """A run started before the encoder's columns existed resumes into a log whose header matches its rows."""
    from training.runlog import LOG_FIELDS, RunLog

    old_fields = LOG_FIELDS[:6]
    (tmp_path / "log.csv").write_text(",".join(old_fields) + "\n" + "\n".join(
        ",".join(str(step if k == "step" else 0.5) for k in old_fields) for step in (2, 4, 6)) + "\n")
    log = RunLog(tmp_path, start_step=6, resume=True)
    log.scalars(8, {"step": 8, "d_loss": 0.25, "e_cycle": 0.75})
    log.close()
    with open(tmp_path / "log.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == LOG_FIELDS
    assert [int(row["step"]) for row in rows] == [2, 4, 6, 8]
    assert rows[0]["d_loss"] == "0.5" and rows[0]["e_cycle"] == ""
    assert rows[-1]["d_loss"] == "0.25" and rows[-1]["e_cycle"] == "0.75"


@pytest.mark.slow
def test_resume_of_a_run_killed_before_its_last_grid(synth_cache, config_file, tmp_path):
    """Killed after its final checkpoint but before the closing pictures: resuming with the same --steps draws
    them (it used to crash in finish(), which ran before the sample inputs existed)."""
    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--steps", "3") == 0
    last = run_dir / "samples" / "step_00000003.png"
    last.unlink()
    assert _train(synth_cache, run_dir, config_file, "--steps", "3", "--resume") == 0
    assert last.is_file()


@pytest.mark.slow
def test_resume_refuses_another_batch_size(synth_cache, config_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--steps", "2") == 0
    assert _train(synth_cache, run_dir, config_file, "--steps", "4", "--resume", "--batch-size", "4") == 2
    assert "--batch-size 4" in capsys.readouterr().err
    batch = str(TINY_CONFIG["batch_size"])
    assert _train(synth_cache, run_dir, config_file, "--steps", "4", "--resume", "--batch-size", batch) == 0


@pytest.mark.slow
def test_resume_may_switch_augmentation_on_and_records_it(synth_cache, config_file, tmp_path, capsys):
    """A resumed run may change RESUMABLE_SETTINGS only; the change is written to config.json and run.json."""
    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--steps", "2") == 0
    assert _train(synth_cache, run_dir, config_file, "--steps", "3", "--resume") == 0  # same config: no change
    assert "config_changes" not in json.loads((run_dir / "run.json").read_text())["training"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY_CONFIG, "g_lr": 1e-3, "augment": ["cutout"]}))
    assert _train(synth_cache, run_dir, other, "--steps", "4", "--resume") == 2
    err = capsys.readouterr().err
    assert "g_lr" in err and "augment" not in err.split("may change only")[0]
    augmented = tmp_path / "augmented.json"
    augmented.write_text(json.dumps({**TINY_CONFIG, "augment": ["translation", "cutout"]}))
    assert _train(synth_cache, run_dir, augmented, "--steps", "5", "--resume") == 0
    assert json.loads((run_dir / "config.json").read_text())["augment"] == ["translation", "cutout"]
    changes = json.loads((run_dir / "run.json").read_text())["training"]["config_changes"]
    assert [(c["step"], c["changed"]) for c in changes] == [(3, {"augment": [[], ["translation", "cutout"]]})]
    assert _train(synth_cache, run_dir, augmented, "--steps", "6", "--resume") == 0  # now the run's own config
    assert len(json.loads((run_dir / "run.json").read_text())["training"]["config_changes"]) == 1


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_a_checkpoint(synth_cache, config_file, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "training", "train", "--data", str(synth_cache), "--out", str(run_dir),
               "--config", str(config_file), "--steps", "100000", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not (run_dir / "log.csv").is_file() or max(_log_steps(run_dir) or [0]) < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    from training.checkpoint import load_state

    assert load_state(run_dir)[1]["step"] >= 2
    assert (run_dir / "training.gif").is_file()


@pytest.mark.slow
def test_data_parallel_over_virtual_devices_with_keras_distribution(synth_cache, config_file, tmp_path):
    """--distribute on the JAX backend with 4 virtual CPU devices (keras.distribution.DataParallel)."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "training", "train", "--data", str(synth_cache), "--out", str(run_dir),
         "--config", str(config_file), "--steps", "2", "--distribute", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data-parallel over 4 devices" in result.stdout
    info = json.loads((run_dir / "run.json").read_text())
    assert info["training"]["backend"] == "jax" and info["training"]["devices"] == 4
    assert _log_steps(run_dir) == [2]


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be positive"),
    ([], "say how long to train"),
    (["--steps", "2", "--resume"], "holds no checkpoint"),
])
def test_train_bad_arguments_give_a_clear_message(synth_cache, config_file, tmp_path, capsys, args, message):
    assert _train(synth_cache, tmp_path / "run", config_file, *args) == 2
    assert message in capsys.readouterr().err


def test_train_refuses_missing_data_and_bad_config(tmp_path, config_file, synth_cache, capsys):
    assert _train(tmp_path / "nowhere", tmp_path / "run", config_file, "--steps", "1") == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "nowhere" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resolution": 64, "learning_rate": 1}))
    assert _train(synth_cache, tmp_path / "run", bad, "--steps", "1") == 2
    assert "unknown key(s) ['learning_rate']" in capsys.readouterr().err
    bad.write_text(json.dumps({**TINY_CONFIG, "attributes": ["Male", "Wings"]}))
    assert _train(synth_cache, tmp_path / "run", bad, "--steps", "1") == 2
    assert "['Wings'] are not in the data" in capsys.readouterr().err
    bad.write_text(json.dumps({**TINY_CONFIG, "resolution": 128}))
    assert _train(synth_cache, tmp_path / "run", bad, "--steps", "1") == 2
    assert "--size 128" in capsys.readouterr().err


@pytest.mark.slow
def test_train_never_overwrites_a_run(synth_cache, config_file, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _train(synth_cache, run_dir, config_file, "--steps", "3") == 0
    before = (run_dir / "checkpoint" / "state.npz").read_bytes()
    assert _train(synth_cache, run_dir, config_file, "--steps", "3") == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert (run_dir / "checkpoint" / "state.npz").read_bytes() == before


def test_export_bad_arguments(tmp_path, capsys):
    assert main(["export", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2
    assert "missing" in capsys.readouterr().err


def test_every_command_has_help():
    for command in ("prepare", "synth", "train", "export", "evaluate"):
        result = subprocess.run([sys.executable, "-m", "training", command, "--help"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage: python -m training " + command in result.stdout


@pytest.mark.parametrize("argv", [
    ["train", "--data", "x.npz", "--out", "run", "--steps", "1"], ["export", "--run", "run", "--out", "m"],
    ["evaluate", "--model", "m", "--data", "x.npz"], ["card", "--model", "m"],
])
def test_every_tensorflow_command_refuses_a_cpu_without_avx(tmp_path, argv):
    """Each command that imports TensorFlow stops with the host-passthrough advice (exit 3), before any other
    check: without AVX TensorFlow would die with 'Illegal instruction' and no explanation."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 ssse3\n")
    env = {k: v for k, v in os.environ.items() if k != "FACEGEN_SKIP_AVX_CHECK"}
    env["FACEGEN_CPUINFO"] = str(cpuinfo)
    result = subprocess.run([sys.executable, "-m", "training", *argv], cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "AVX" in result.stderr and "host-passthrough" in result.stderr
    # prepare and synth import no TensorFlow: they run on such a CPU.
    result = subprocess.run([sys.executable, "-m", "training", "synth", "--out", "s", "--count", "2", "--no-progress"],
                            cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_model_trained_on_celeba_hq_names_its_data_terms_and_split(tmp_path):
    """Prepare a tiny CelebAMask-HQ folder, train two steps, export, card: the manifest and the card say which data,
    that CelebA's non-commercial terms apply and that the split is CelebA's identity-disjoint one."""
    from facegen.model_folder import read_manifest
    from tests.celebahq_fixture import make_celebahq
    from training.data import CELEBA_LICENCE

    make_celebahq(tmp_path / "hq")
    cache = tmp_path / "hq-64.npz"
    assert main(["prepare", "--data", str(tmp_path / "hq"), "--out", str(cache), "--size", "64", "--no-progress"]) == 0
    config = tmp_path / "c.json"
    config.write_text(json.dumps({**TINY_CONFIG, "batch_size": 4, "d_steps": 1}))
    assert _train(cache, tmp_path / "run", config, "--steps", "2") == 0
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m")]) == 0
    dataset = read_manifest(tmp_path / "m")["dataset"]
    assert dataset["licence"] == CELEBA_LICENCE and dataset["synthetic"] is False
    assert dataset["split"]["kind"] == "celeba-official" and dataset["split"]["identity_disjoint"] is True
    assert main(["card", "--model", str(tmp_path / "m")]) == 0
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "Trained on photographs of real people" in card and f"| licence | {CELEBA_LICENCE} |" in card
    assert "| split | CelebA's official list_eval_partition.txt through CelebA-HQ-to-CelebA-mapping.txt" in card
    assert "12 / 4 / 4 train / validation / test" in card


def test_export_gives_runs_from_before_the_terms_were_recorded_their_licence_and_split(synth_cache):
    from training.data import CELEBA_LICENCE, SYNTH_LICENCE, load_cache
    from training.export import dataset_terms

    old = {"name": "faces", "synthetic": True, "cache": str(synth_cache)}
    filled = dataset_terms(old)
    assert filled["licence"] == SYNTH_LICENCE and filled["split"] == load_cache(synth_cache).meta["split"]
    assert "licence" not in old  # the run's record is not changed
    gone = dataset_terms({"name": "celeba", "synthetic": False, "cache": "/nonexistent/cache.npz"})
    assert gone["licence"] == CELEBA_LICENCE and gone.get("split") is None
    kept = dataset_terms({"synthetic": False, "licence": "custom", "split": {"kind": "seeded"}})
    assert kept["licence"] == "custom" and kept["split"] == {"kind": "seeded"}


@pytest.mark.slow
def test_card_redraws_a_training_gif_too_big_for_git_narrower(tmp_path, monkeypatch):
    from PIL import Image

    from training import card
    from training.pictures import make_gif

    frames = []
    (tmp_path / "samples").mkdir()
    for step in range(4):
        frames.append(tmp_path / "samples" / f"step_{step:08d}.png")
        Image.fromarray(np.random.RandomState(step).randint(0, 256, (300, 300, 3), np.uint8)).save(frames[-1])
    make_gif(frames, tmp_path / "training.gif", width=384)
    big = (tmp_path / "training.gif").stat().st_size
    monkeypatch.setattr(card, "GIF_LIMIT_BYTES", big - 1)  # the run's GIF is just too big
    assert card.small_training_gif(tmp_path, tmp_path / "card.gif")
    with Image.open(tmp_path / "card.gif") as gif:
        assert gif.n_frames == 4 and gif.width == 256
    assert (tmp_path / "card.gif").stat().st_size < big
    monkeypatch.setattr(card, "GIF_LIMIT_BYTES", 10)  # nothing fits: no GIF, and none left behind
    assert not card.small_training_gif(tmp_path, tmp_path / "none.gif") and not (tmp_path / "none.gif").exists()


@pytest.mark.slow
def test_card_renders_pictures_and_figures_from_the_manifest(tmp_path, capsys):
    """`card` on an exported model with evaluate-style metrics and a baseline: pictures and tables from the manifest."""
    from PIL import Image

    from facegen.model_folder import read_manifest, write_manifest
    from training.export import export_random_model

    model_dir = export_random_model(tmp_path / "m", name="m", resolution=32, latent_size=8)
    manifest = read_manifest(model_dir)
    per = {"Male": {"accuracy": 0.95, "on": 0.9, "off": 1.0, "ceiling": 0.99}}
    manifest["metrics"] = {"attribute_accuracy": {"mean": 0.95, "ceiling_mean": 0.99, "per_attribute": per},
                           "frechet_distance": {"value": 12.5, "real_split_half": 1.5},
                           "diversity": {"feature_ratio": 0.9, "collapsed": False}, "command": "evaluate ..."}
    write_manifest(model_dir, manifest)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"attribute_accuracy": {"mean": 0.5, "per_attribute": {"Male": {"accuracy": 0.5}}},
                                    "frechet_distance": {"value": 99.0}, "diversity": {"collapsed": True}}))
    notes = tmp_path / "notes.md"
    notes.write_text("## Known weaknesses\n\nBlurry hair.\n")
    assert main(["card", "--model", str(model_dir), "--baseline", str(baseline), "--baseline-name", "ArtiFace",
                 "--notes", str(notes)]) == 0
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "| Male | 0.950 | 0.900 | 1.000 | n/a | 0.990 | 0.500 |" in card
    assert "12.500" in card and "99.000" in card and "| mode collapse | no | yes |" in card
    assert "Blurry hair." in card and "![samples.png](samples.png)" in card
    assert Image.open(model_dir / "samples.png").size[0] >= 8 * 32
    rows = len(manifest["attributes"])
    assert Image.open(model_dir / "attributes.png").size[1] >= rows * 32
    assert main(["card", "--model", str(tmp_path / "nothing")]) == 2
    assert "holds no manifest.json" in capsys.readouterr().err
