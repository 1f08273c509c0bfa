"""The run folder's contract (training/run_folder.py) and the data cache's partition rules (training/data.py): the
names train writes and export, evaluate and card read, and which rows train on and which are held out."""

import json

import numpy as np
import pytest

from training import data, run_folder
from training.usage_error import UsageError


def test_partition_codes_are_celebas():
    # CelebA's list_eval_partition.txt: 0 train, 1 validation, 2 test; the cache stores them as they are.
    assert (data.TRAIN, data.VALIDATION, data.TEST) == (0, 1, 2)
    assert [data.PARTITION_NAMES[code] for code in (data.TRAIN, data.VALIDATION, data.TEST)] == [
        "train", "validation", "test"]
    split = data.seeded_split(100)
    assert np.bincount(split, minlength=3).tolist() == [80, 10, 10]


def test_training_rows_are_the_training_partition_or_everything():
    assert data.training_rows([0, 2, 0, 1]).tolist() == [0, 2]
    assert data.training_rows([1, 2, 2]).tolist() == [0, 1, 2]  # no training partition: train on everything


def test_held_out_rows_are_the_test_partition_else_validation_never_training():
    rows, name = data.held_out_rows([0, 1, 2, 0, 2, 1])
    assert rows.tolist() == [2, 4] and name == "test"
    rows, name = data.held_out_rows([0, 1, 0, 1])
    assert rows.tolist() == [1, 3] and name == "validation"
    rows, name = data.held_out_rows([0, 0, 0])
    assert len(rows) == 0 and name is None


def test_sample_names_sort_by_step_and_give_their_step_back(tmp_path):
    paths = [run_folder.sample_path(tmp_path, step) for step in (120, 7, 1000)]
    for path in paths:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    assert [run_folder.sample_step(p) for p in run_folder.sample_frames(tmp_path)] == [7, 120, 1000]
    assert paths[1].relative_to(tmp_path).as_posix() == "samples/step_00000007.png"
    assert run_folder.state_path(tmp_path).relative_to(tmp_path).as_posix() == "checkpoint/state.npz"


def test_run_info_and_the_recorded_cache(tmp_path):
    assert run_folder.read_run_info(tmp_path) == {}  # before training starts
    assert run_folder.recorded_cache({}) is None and run_folder.recorded_cache({"dataset": {"cache": None}}) is None
    run_folder.write_run_info(tmp_path, {"dataset": {"name": "t", "cache": "/data/faces-64.npz"}})
    info = json.loads((tmp_path / "run.json").read_text())
    assert run_folder.read_run_info(tmp_path) == info
    assert run_folder.recorded_cache(info).name == "faces-64.npz"


def test_a_folder_without_config_is_not_a_run(tmp_path):
    assert not run_folder.is_run(tmp_path)
    with pytest.raises(UsageError, match=r"--run: .* is not a training run \(config.json is missing\)"):
        run_folder.read_config(tmp_path)
