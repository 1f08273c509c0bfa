"""Checkpoints: every piece of training state in one .npz, written atomically.

Keys are ``<group>/<index>`` (groups: g, d, g_ema, g_opt, d_opt, schedule; e and e_opt for runs with the encoder)
in each model's variable order, which the network code fixes, plus ``meta`` (JSON: step, epoch, seconds, RNG state). Plain arrays make a checkpoint
readable on any backend: train on JAX, export on TensorFlow.
"""

import json
import os
from pathlib import Path

import numpy as np

from training import run_folder
from training.usage_error import UsageError


def save_state(run_dir: Path, groups: dict, meta: dict) -> Path:
    final = run_folder.state_path(run_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}/{i}": np.asarray(value) for name, values in groups.items() for i, value in enumerate(values)}
    arrays["meta"] = np.array(json.dumps(meta))
    temporary = final.with_name(final.name + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)  # a kill mid-write leaves the previous checkpoint intact
    return final


def has_state(run_dir: Path) -> bool:
    return run_folder.state_path(run_dir).is_file()


def load_state(run_dir: Path) -> tuple[dict, dict]:
    """(groups, meta): groups maps a group name to its list of arrays."""
    path = run_folder.state_path(run_dir)
    if not path.is_file():
        raise UsageError(f"no checkpoint in {run_dir} (looked for {path})")
    try:
        with np.load(path) as archive:
            meta = json.loads(str(archive["meta"]))
            groups: dict = {}
            for key in archive.files:
                if key == "meta":
                    continue
                name, index = key.rsplit("/", 1)
                groups.setdefault(name, {})[int(index)] = archive[key]
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"checkpoint {path} is unreadable: {error}") from None
    return {name: [values[i] for i in range(len(values))] for name, values in groups.items()}, meta


def assign(variables, arrays, what: str) -> None:
    """Copy arrays into Keras variables, checking that the architecture matches the checkpoint."""
    if len(variables) != len(arrays):
        raise UsageError(f"checkpoint's {what} has {len(arrays)} tensors, the model has {len(variables)}: "
                         "was it trained with another config?")
    for variable, array in zip(variables, arrays):
        if tuple(variable.shape) != tuple(array.shape):
            raise UsageError(f"checkpoint's {what} tensor {variable.path} has shape {array.shape}, "
                             f"the model expects {tuple(variable.shape)}")
        variable.assign(array)
