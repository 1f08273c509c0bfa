"""``python -m facegen generate`` (app/generate.py): the service's faces as a labelled data set in CelebAMask-HQ's
layout, checked against the service itself (create_app), against ``training prepare`` reading it back, and for
resuming and bad flags. The models are the real tiny exports of tests/conftest.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app import generate
from tests.conftest import TABLE_ATTRIBUTES, TABLE_MODEL, TINY_MODEL

REPO = Path(__file__).resolve().parents[1]


def run(*argv) -> int:
    """The command in this process, as ``python -m facegen generate ARGV`` (argparse's exits become codes).
    Without a --workers flag the faces are made in this process (--workers 1): each worker process loads TensorFlow
    and the model (about 10 s here), so only the tests about workers start them."""
    argv = [str(a) for a in argv]
    if "--workers" not in argv:
        argv += ["--workers", "1"]
    try:
        return generate.main(argv)
    except SystemExit as stop:
        return stop.code


def files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def table_model(table_models_dir, monkeypatch):
    """Generate reads the same models directory the service does."""
    monkeypatch.setenv("FACEGEN_MODELS_DIR", str(table_models_dir))
    return table_models_dir / TABLE_MODEL


QUERY = {"seed": 70, "attrs": "young,-Eyeglasses", "psi": "0.7", "size": "64"}


def test_png_file_i_is_the_services_face_for_seed_s_plus_i(table_model, table_client, tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "LABEL_BATCH", 5)  # the labels resolved 5 at a time: 12 faces end mid-batch
    out = tmp_path / "faces"
    assert run("--count", 12, "--out", out, "--model", TABLE_MODEL, "--seed", QUERY["seed"], "--attrs",
               QUERY["attrs"], "--psi", QUERY["psi"], "--size", QUERY["size"], "--no-progress", "--workers", 2) == 0
    labels = (out / generate.ANNOTATION).read_text().splitlines()
    assert labels[:2] == ["12", " ".join(TABLE_ATTRIBUTES)]
    for i in range(12):
        query = f"model={TABLE_MODEL}&seed={QUERY['seed'] + i}&attrs={QUERY['attrs']}&psi={QUERY['psi']}&size=64"
        response = table_client.get(f"/api/face?{query}")
        assert response.status_code == 200
        assert (out / generate.IMAGES / f"{i}.png").read_bytes() == response.data, i
        # The label line is the vector the service used: X-Attributes-Explicit, as 1 / -1.
        explicit = response.headers["X-Attributes-Explicit"].split(",")
        assert labels[2 + i].split() == [f"{i}.png"] + ["-1" if name.startswith("-") else "1" for name in explicit]
    record = json.loads((out / generate.RECORD).read_text())
    assert record["arguments"] == {"count": 12, "seed": 70, "attrs": "Young,-Eyeglasses", "psi": 0.7, "size": 64,
                                   "format": "png"}
    assert record["seeds"]["first"] == 70 and record["seeds"]["last"] == 81
    assert record["model"]["name"] == TABLE_MODEL and len(record["model"]["manifest_sha256"]) == 64
    manifest = json.loads((table_model / "manifest.json").read_text())
    assert record["data_terms"]["licence"] == manifest["dataset"].get("licence")


def test_a_face_set_is_its_arguments_each_face_resolved_only_when_it_is_made(table_model, tmp_path, monkeypatch):
    """A million faces cost this process no more than a thousand before the workers start: nothing is resolved
    ahead, and what a worker is handed about the faces is the FaceSet, a few numbers."""
    import pickle

    from app import faces as faces_module
    from app.faces import FaceRequest

    model = generate.load(str(table_model))
    args = generate.parser().parse_args(["--count", "1000000", "--out", str(tmp_path / "x"), "--seed", "9",
                                         "--attrs", "Male", "--psi", "0.8"])
    resolved = []
    real = faces_module.resolve
    monkeypatch.setattr(faces_module, "resolve", lambda *a, **k: resolved.append(a[1]) or real(*a, **k))
    faces = generate.face_set(model, args)
    record = generate.record(model, faces, args)
    assert resolved == [9]  # the record's first face only
    assert (record["seeds"]["first"], record["seeds"]["last"]) == (9, 1_000_008)
    assert len(pickle.dumps(faces)) < 500
    # Resolved later, by whoever makes the face, it is the service's face for seed first + i.
    last = faces.requests(model, [999_999])[0]
    expected = FaceRequest.resolving(model, 1_000_008, ("Male",), 0.8)
    assert last == expected
    np.testing.assert_array_equal(last.resolved().noise, expected.resolved().noise)
    np.testing.assert_array_equal(last.resolved().attributes, expected.resolved().attributes)


def test_the_same_arguments_give_byte_identical_folders_whichever_process_makes_the_faces(table_model, tmp_path):
    # 1: this process; 3 workers: the 7 batches of 16 dealt out unevenly (3, 2, 2), the last one short.
    for name, workers in (("a", 1), ("b", 1), ("c", 3)):
        assert run("--count", 100, "--out", tmp_path / name, "--seed", 3, "--format", "jpg", "--no-progress",
                   "--workers", workers) == 0
    first, second, third = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(first) == 100 + 2 and first == second == third
    assert all(data[:3] == b"\xff\xd8\xff" for name, data in first.items() if name.endswith(".jpg"))


def test_prepare_reads_the_folder_back_with_the_labels_asked_for(table_model, tmp_path):
    from training.data import load_cache, prepare

    out = tmp_path / "faces"
    assert run("--count", 30, "--out", out, "--attrs", "Male,-Smiling", "--no-progress") == 0
    prepare(out, tmp_path / "cache.npz", size=32, progress=False, quiet=True)
    cache = load_cache(tmp_path / "cache.npz")
    assert list(cache.attribute_names) == list(TABLE_ATTRIBUTES)
    assert len(cache) == 30 and cache.meta["crop"] is None  # square faces, read whole
    names = list(TABLE_ATTRIBUTES)
    assert cache.attributes[:, names.index("Male")].all() and not cache.attributes[:, names.index("Smiling")].any()
    # The open attributes came from the seeds (whole training rows), so they vary.
    assert len({row.tobytes() for row in np.asarray(cache.attributes)}) > 1
    # The pixels are the files' (32 px model at 32 px: nothing resampled).
    from PIL import Image

    by_name = dict(zip(cache.filenames, np.asarray(cache.images)))
    np.testing.assert_array_equal(by_name["7.png"], np.asarray(Image.open(out / generate.IMAGES / "7.png")))


def test_an_interrupted_run_leaves_whole_files_and_the_same_command_completes_it(table_model, tmp_path,
                                                                                  monkeypatch, capsys):
    # Two worker processes, each with one batch of 16 in hand when the interrupt comes: more batches than that, so
    # the interrupt lands while batches remain
    count = 16 * 7
    argv = ("--count", count, "--seed", 11, "--no-progress", "--workers", 2)
    assert run(*argv, "--out", tmp_path / "whole") == 0
    whole = files(tmp_path / "whole")

    real_bar = generate.progress_bar

    def interrupted_after_17(total, done, enabled):
        bar, counted = real_bar(total, done, enabled), []
        update = bar.update

        def update_then_interrupt(n=1):
            update(n)
            counted.append(n)
            if sum(counted) >= 17 and sum(counted) - n < 17:  # counted per written batch of faces
                raise KeyboardInterrupt  # Ctrl-C lands in the main thread, here while faces are in flight
        bar.update = update_then_interrupt
        return bar

    monkeypatch.setattr(generate, "progress_bar", interrupted_after_17)
    part = tmp_path / "part"
    assert run(*argv, "--out", part) == 130
    on_disk = files(part)
    faces = [name for name in on_disk if name.startswith(generate.IMAGES)]
    assert f"{len(faces)} of {count}" in capsys.readouterr().err
    # At least the 17 counted, maybe a few in flight, each whole: no annotation yet, nothing half-written.
    assert 17 <= len(faces) < count and set(on_disk) == {generate.RECORD, *faces}
    assert all(on_disk[name] == whole[name] for name in on_disk)

    monkeypatch.setattr(generate, "progress_bar", real_bar)
    (part / faces[0]).unlink()  # a gap is filled too, not only the tail
    assert run(*argv, "--out", part) == 0
    assert f"wrote {count + 1 - len(faces)} faces ({len(faces) - 1} already there)" in capsys.readouterr().out
    assert files(part) == whole


def test_ctrl_c_while_the_labels_are_written_leaves_no_annotation_and_the_same_command_writes_it(
        table_model, tmp_path, monkeypatch, capsys):
    argv = ("--count", 20, "--seed", 4, "--no-progress")
    assert run(*argv, "--out", tmp_path / "whole") == 0
    real_lines = generate.label_lines

    def interrupted_after_7(*args):
        for number, line in enumerate(real_lines(*args)):
            if number == 7:
                raise KeyboardInterrupt
            yield line

    monkeypatch.setattr(generate, "label_lines", interrupted_after_7)
    part = tmp_path / "part"
    assert run(*argv, "--out", part) == 130
    assert "20 of 20 faces are in" in capsys.readouterr().err
    assert not (part / generate.ANNOTATION).exists() and not list(part.rglob(f"*{generate.PARTIAL}"))
    monkeypatch.setattr(generate, "label_lines", real_lines)
    assert run(*argv, "--out", part) == 0
    assert "wrote 0 faces (20 already there)" in capsys.readouterr().out
    assert files(part) == files(tmp_path / "whole")


@pytest.mark.slow  # TensorFlow in a subprocess
def test_ctrl_c_in_a_real_run_leaves_only_whole_files(tiny_models_dir, tmp_path):
    import signal
    import time

    from PIL import Image

    out = tmp_path / "faces"
    # Enough faces that an idle machine is still writing them when the signal comes (3,000 tiny faces were all
    # written before it, and the run ended 0).
    command = [sys.executable, "-m", "facegen", "generate", "--count", "30000", "--out", str(out), "--model",
               str(tiny_models_dir / TINY_MODEL), "--no-progress"]
    # Its own process group, signalled whole below: a terminal's Ctrl-C reaches the worker processes too.
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 600  # TensorFlow's import and the model's warm-up first, on a shared CPU
    while time.monotonic() < deadline and len(list((out / generate.IMAGES).glob("*.png"))) < 50:
        if process.poll() is not None:
            pytest.fail(f"generate stopped before it was interrupted: {process.communicate()[1]}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends, while faces are being written
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert "the same command completes it" in err
    assert not list(out.rglob(f"*{generate.PARTIAL}")) and not (out / generate.ANNOTATION).exists()
    for path in (out / generate.IMAGES).iterdir():
        with Image.open(path) as image:
            image.load()  # a truncated file would fail here
    # The command runs TensorFlow on fewer threads than this process (app/generate.py): its faces are still the
    # service's, byte for byte.
    from app.faces import FaceRequest, render_png

    model = generate.load(str(tiny_models_dir / TINY_MODEL))
    for i in range(5):
        assert (out / generate.IMAGES / f"{i}.png").read_bytes() == render_png(FaceRequest.resolving(model, i))


@pytest.mark.slow  # TensorFlow in subprocesses
def test_with_workers_this_process_reads_the_manifest_only_and_a_workers_model_error_names_the_flag(tiny_models_dir,
                                                                                                     tmp_path):
    import shutil

    # The parent never imports TensorFlow: its workers load the model (their start-up is the command's).
    probe = ("import sys; from app import generate; code = generate.main(sys.argv[1:]); "
             "print('tensorflow' in sys.modules); sys.exit(code)")
    argv = ["--count", "40", "--out", str(tmp_path / "faces"), "--model", str(tiny_models_dir / TINY_MODEL),
            "--no-progress", "--workers", "2"]
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"
    assert len(list((tmp_path / "faces" / generate.IMAGES).glob("*.png"))) == 40
    # A SavedModel that only its loading finds damaged: the worker's error is the same one line naming --model.
    broken = tmp_path / "models" / TINY_MODEL
    shutil.copytree(tiny_models_dir / TINY_MODEL, broken)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    done = subprocess.run([sys.executable, "-m", "facegen", "generate", *argv[:2], "--out", str(tmp_path / "other"),
                           "--model", str(broken), "--no-progress", "--workers", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert last.startswith("python -m facegen generate: error: --model: ") and "cannot load the SavedModel" in last


def bad(tmp_path, table_models_dir):
    other = tmp_path / "other"
    (other / "notes").mkdir(parents=True)
    made = tmp_path / "made"
    return {
        "count negative": (["--count", "-3"], "--count"),
        "count zero": (["--count", "0"], "--count"),
        "count not a number": (["--count", "many"], "--count"),
        "unknown attribute": (["--attrs", "Male,Wings"], "--attrs"),
        "both on and off": (["--attrs", "Male,-Male"], "--attrs"),
        "psi out of range": (["--psi", "3"], "--psi"),
        "size not allowed": (["--size", "100"], "--size"),
        "seed past the largest": (["--seed", str(2**32 - 1)], "--count"),
        "seed not a number": (["--seed", "-1"], "--seed"),
        "unknown model": (["--model", "nobody"], "--model"),
        "unwritable folder": (["--out", str(tmp_path / "a-file" / "faces")], "--out"),
        "folder not ours": (["--out", str(other)], "--out"),
        "folder from other arguments": (["--out", str(made), "--seed", "1"], "--out"),
        "format": (["--format", "gif"], "--format"),
        "no workers": (["--workers", "0"], "--workers"),
        "workers not a number": (["--workers", "all"], "--workers"),
    }


@pytest.mark.parametrize("case", ["count negative", "count zero", "count not a number", "unknown attribute",
                                  "both on and off", "psi out of range", "size not allowed", "seed past the largest",
                                  "seed not a number", "unknown model", "unwritable folder", "folder not ours",
                                  "folder from other arguments", "format", "no workers",
                                  "workers not a number"])
def test_bad_input_is_one_line_naming_the_flag_exit_2(case, table_model, table_models_dir, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    assert run("--count", 2, "--out", tmp_path / "made", "--no-progress") == 0
    before = files(tmp_path / "made")
    capsys.readouterr()
    flags, named = bad(tmp_path, table_models_dir)[case]
    defaults = {"--count": "2", "--out": str(tmp_path / "new")}
    for i in range(0, len(flags), 2):
        defaults.pop(flags[i], None)
    argv = [*flags, *[part for pair in defaults.items() for part in pair], "--no-progress"]
    assert run(*argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    assert files(tmp_path / "made") == before  # a refused folder is left as it was
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def test_the_command_line_dispatches_and_help_shows_an_example():
    done = subprocess.run([sys.executable, "-m", "facegen", "generate", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    assert "python -m facegen generate --count" in done.stdout and "--attrs" in done.stdout
    readme = (REPO / "README.md").read_text()
    assert "python -m facegen generate --count" in readme


def test_a_model_folder_path_works_as_well_as_a_name(tiny_models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGEN_MODELS_DIR", str(tmp_path / "no-models-here"))
    assert run("--count", 3, "--out", tmp_path / "faces", "--model", tiny_models_dir / TINY_MODEL,
               "--no-progress") == 0
    assert json.loads((tmp_path / "faces" / generate.RECORD).read_text())["model"]["name"] == TINY_MODEL


def test_a_set_from_the_celeba_trained_default_carries_celebas_terms(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEGEN_MODELS_DIR", raising=False)
    monkeypatch.delenv("FACEGEN_MODEL", raising=False)
    assert run("--count", 2, "--out", tmp_path / "faces", "--no-progress") == 0  # the repository's default model
    record = json.loads((tmp_path / "faces" / generate.RECORD).read_text())
    assert record["model"]["name"] == (REPO / "models" / "DEFAULT").read_text().strip()
    assert "non-commercial" in record["data_terms"]["licence"] and "carry its terms" in record["data_terms"]["note"]


class _Process:
    def __init__(self, exitcode):
        self.exitcode = exitcode


@pytest.mark.parametrize("messages, processes, raised", [
    ([("failed", "ValueError: bad")], [None], generate.WorkerFailed),
    ([("ready", 0), ("error", "No space left on device")], [None, None], OSError),
    ([("ready", 0)], [None, -9], generate.WorkerFailed),  # one said ready, the other was killed
    ([("ready", 0), ("done", 0)], [0, 0], generate.WorkerFailed),  # both ended, one never said ready: no wait
    ([("model", "cannot load the SavedModel")], [None], generate.UsageError),
])
def test_a_workers_failure_or_death_stops_the_run_with_its_reason(messages, processes, raised):
    import queue

    waiting = queue.Queue()
    for message in messages:
        waiting.put(message)
    with pytest.raises(raised):
        generate._collect(waiting, [_Process(code) for code in processes], until="ready")


def test_workers_said_ready_and_done_end_the_collection_counting_what_they_wrote():
    import queue

    waiting, counted = queue.Queue(), []
    for message in [("wrote", 16), ("wrote", 4), ("done", 0), ("wrote", 16), ("done", 0), ("wrote", 99)]:
        waiting.put(message)
    generate._collect(waiting, [_Process(None), _Process(None)], until="done", on_wrote=counted.append)
    assert counted == [16, 4, 16]  # stops at the second "done": the message after it is not read
