"""A run's scalar log: log.csv (read by pictures.plot_losses) and TensorBoard event files, kept in step with each
other and with the checkpoint.

TensorBoard events are written with tensorboardX, which needs no TensorFlow, so a JAX run on a GPU machine writes
them too: ``tensorboard --logdir runs/`` shows the losses, D's accuracy, images/s and the sample grid per epoch.
On ``--resume`` both forget what was logged after the checkpoint the run resumes from (a killed run may have
logged steps that it then lost), so no step appears twice.
"""

import csv
import os
from pathlib import Path

import numpy as np

from training import run_folder

LOG_FIELDS = ["step", "epoch", "seconds", "images_per_second", "d_loss", "g_loss", "d_class", "g_class",
              "d_accuracy", "d_accuracy_running", "d_real", "d_fake",
              "e_reconstruction", "e_cycle", "e_attribute_accuracy",  # the encoder's, empty without one
              "cpu_seconds"]  # CPU time over all cores and sessions: runs compared on a shared machine


def truncate_csv(path: Path, last_step: int) -> int:
    """Drop rows after ``last_step`` (atomically); returns how many were dropped. A log written with other columns
    (an older version) is rewritten with today's, so that appended rows line up with the header."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = reader.fieldnames
    keep = [row for row in rows if _int(row.get("step")) <= last_step]
    if len(keep) == len(rows) and header == LOG_FIELDS:
        return 0
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(keep)
    os.replace(temporary, path)
    return len(rows) - len(keep)


def _int(value) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


class RunLog:
    def __init__(self, run_dir: Path, start_step: int, resume: bool):
        self.path = Path(run_dir) / run_folder.LOG
        if resume and self.path.is_file():
            dropped = truncate_csv(self.path, start_step)
            if dropped:
                print(f"log.csv: dropped {dropped} row(s) logged after the checkpoint at step {start_step}", flush=True)
        elif not resume and self.path.is_file():
            self.path.unlink()
        self._file = open(self.path, "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=LOG_FIELDS, extrasaction="ignore")
        if self._file.tell() == 0:
            self._csv.writeheader()
        self._board = _tensorboard_writer(Path(run_dir) / run_folder.TENSORBOARD, start_step if resume else None)

    def scalars(self, step: int, values: dict) -> None:
        row = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in values.items()}
        self._csv.writerow(row)
        self._file.flush()
        if self._board is not None:
            for key in LOG_FIELDS[3:]:
                if key in values:
                    self._board.add_scalar(f"train/{key}", float(values[key]), step)
            self._board.flush()

    def image(self, step: int, tag: str, image_hwc: np.ndarray) -> None:
        if self._board is not None:
            self._board.add_image(tag, np.asarray(image_hwc, np.uint8), step, dataformats="HWC")
            self._board.flush()

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _tensorboard_writer(folder: Path, purge_step):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        print("tensorboardX is not installed: no TensorBoard events (pip install -r requirements-train.txt)",
              flush=True)
        return None
    # purge_step: TensorBoard hides the events after the checkpoint that an earlier, killed session wrote.
    return SummaryWriter(logdir=str(folder), purge_step=None if purge_step is None else purge_step + 1, flush_secs=30)
