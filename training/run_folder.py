"""The run folder: what ``train --out RUN_DIR`` writes and ``export``, ``evaluate`` and ``card`` read. Its one home
(docs/ARCHITECTURE.md, "The run folder"), as facegen/model_folder.py is the model folder's: the file names, reading
config.json and run.json, the data cache the run recorded, and loading the run's trained networks.

RUN_DIR/
  config.json            the TrainConfig the run trains with (``--resume`` reads it back)
  run.json               data set, attribute frequencies and table, device: what export copies into the manifest
  log.csv                scalars every ``log_every`` steps (training/runlog.py)
  tensorboard/           the same scalars and the sample grids as TensorBoard event files
  checkpoint/state.npz   all training state (training/checkpoint.py), rewritten atomically
  samples/step_*.png     the fixed-seed sample grid, per ``--sample-every`` epochs and at the end
  loss_curves.png        the losses from log.csv, drawn at the end of each session
  training.gif           the sample grids in step order, drawn at the end of each session

An upsampling stage's run (``python -m training upsample``, training/upsample.py) is a smaller folder of the same
names: upsample.json (its UpsampleConfig, and the switches made on resume), log.csv, checkpoint/state.npz,
loss_curves.png, and with fakes_from samples/step_*.png (that model's faces for seeds 0-15 as the stage enlarges
them, at every checkpoint) and training.gif.

Imports no Keras or TensorFlow at module level: only the loaders need them.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.usage_error import UsageError

CONFIG = "config.json"
RUN_INFO = "run.json"
LOG = "log.csv"
TENSORBOARD = "tensorboard"
CHECKPOINT = "checkpoint"
STATE = "state.npz"
SAMPLES = "samples"
LOSS_CURVES = "loss_curves.png"
TRAINING_GIF = "training.gif"
UPSAMPLE_CONFIG = "upsample.json"


def state_path(run_dir) -> Path:
    """checkpoint/state.npz: the run's latest training state."""
    return Path(run_dir) / CHECKPOINT / STATE


def sample_path(run_dir, step: int) -> Path:
    """samples/step_NNNNNNNN.png: the sample grid drawn after ``step`` steps (zero-padded, so names sort by step)."""
    return Path(run_dir) / SAMPLES / f"step_{int(step):08d}.png"


def sample_step(path) -> int:
    """The step a sample grid's file name (sample_path) says it was drawn at."""
    return int(Path(path).stem.split("_")[1])


def sample_frames(run_dir) -> list[Path]:
    """The run's sample grids in step order."""
    return sorted((Path(run_dir) / SAMPLES).glob("step_*.png"))


def is_run(run_dir) -> bool:
    return (Path(run_dir) / CONFIG).is_file()


def read_config(run_dir, flag: str = "--run"):
    """The run's TrainConfig; a UsageError naming ``flag`` when the folder is not a training run."""
    from training.config import load_config

    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise UsageError(f"{flag}: {run_dir} is not a training run ({CONFIG} is missing)")
    return load_config(run_dir / CONFIG)


def read_run_info(run_dir) -> dict:
    """run.json as a dict; {} for a run that has none yet (it is written when training starts)."""
    path = Path(run_dir) / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def write_run_info(run_dir, info: dict) -> None:
    (Path(run_dir) / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")


def recorded_cache(run_info: dict) -> Path | None:
    """The data cache the run trained on, as its run.json recorded it (None for runs started before it was)."""
    recorded = (run_info.get("dataset") or {}).get("cache") if isinstance(run_info, dict) else None
    return Path(recorded) if recorded else None


def load_run_generator(run_dir, use_ema: bool = True):
    """(generator, config, run_info, meta, group) from a run's latest checkpoint, on the active Keras backend.

    ``group`` is "g_ema" (the EMA copy, what samples and exports use) unless the run has none or use_ema is off.
    """
    from training import checkpoint
    from training.networks import build_generator

    config = read_config(run_dir)
    run_info = read_run_info(run_dir)
    groups, meta = checkpoint.load_state(run_dir)
    group = "g_ema" if use_ema and groups.get("g_ema") else "g"
    generator = build_generator(config)
    checkpoint.assign(generator.variables, groups[group], f"generator ({group})")
    return generator, config, run_info, meta, group


def load_run_encoder(run_dir, config):
    """The run's trained encoder from its latest checkpoint, or None when the config has none.

    Exported beside the EMA generator: E trained with the raw G, which the EMA copy follows closely."""
    if not config.encoder:
        return None
    from training import checkpoint
    from training.networks import build_encoder

    groups, _ = checkpoint.load_state(run_dir)
    if not groups.get("e"):
        raise UsageError(f"{run_dir}: the config has encoder: true but the checkpoint holds no encoder (e/*)")
    encoder = build_encoder(config)
    checkpoint.assign(encoder.variables, groups["e"], "encoder")
    return encoder
