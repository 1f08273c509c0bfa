"""Pictures of a training run: sample grids, loss curves and the training GIF."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from facegen.model_folder import to_uint8  # noqa: F401  (re-exported: training code draws grids from it)


def grid(images: np.ndarray, columns: int, pad: int = 2) -> Image.Image:
    """uint8 [N, H, W, 3] -> one image, row-major, with a thin dark border between faces."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 24, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    return Image.fromarray(canvas)


def read_log(path: Path) -> dict:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {key: [] for key in (rows[0].keys() if rows else [])}
    for row in rows:
        for key, value in row.items():
            try:
                columns[key].append(float(value))
            except (TypeError, ValueError):
                columns[key].append(float("nan"))
    return {key: np.asarray(values) for key, values in columns.items()}


def plot_losses(log_path: Path, out_path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_log(log_path)
    if not log or len(log.get("step", [])) == 0:
        return None
    has_encoder = np.isfinite(log.get("e_reconstruction", np.array([np.nan]))).any()
    fig, axes = plt.subplots(1, 4 if has_encoder else 3, figsize=(20 if has_encoder else 15, 4))
    step = log["step"]
    for key, label in (("d_loss", "D adversarial"), ("g_loss", "G adversarial")):
        if key in log:
            axes[0].plot(step, log[key], label=label)
    for key, label in (("d_class", "D attribute (real)"), ("g_class", "G attribute (fake)")):
        if key in log:
            axes[1].plot(step, log[key], label=label)
    for key, label in (("d_accuracy", "D accuracy"), ("d_real", "D(real) logit"), ("d_fake", "D(fake) logit")):
        if key in log:
            axes[2].plot(step, log[key], label=label)
    titles = ("adversarial losses", "auxiliary attribute losses", "discriminator")
    if has_encoder:
        for key, label in (("e_reconstruction", "E reconstruction"), ("e_cycle", "E cycle (noise)"),
                           ("e_attribute_accuracy", "E attribute accuracy")):
            axes[3].plot(step, log[key], label=label)
        titles += ("encoder",)
    for axis, title in zip(axes, titles):
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path


def plot_stage_losses(log_path: Path, out_path: Path) -> Path | None:
    """An upsampling run's curves (training/upsample.py's log) by step: L1, and once adversarial, the
    critic's and the stage's adversarial losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_log(log_path)
    if not log or len(log.get("step", [])) == 0:
        return None
    adversarial = np.isfinite(log.get("d_loss", np.array([np.nan]))).any()
    fig, axes = plt.subplots(1, 2 if adversarial else 1, figsize=(12 if adversarial else 6, 4), squeeze=False)
    axes = axes[0]
    axes[0].plot(log["step"], log["l1"], label="L1 against the 128 px photo")
    axes[0].set_title("the stage's pixel error")
    if adversarial:
        axes[1].plot(log["step"], log["d_loss"], label="critic")
        axes[1].plot(log["step"], log["g_adversarial"], label="stage (adversarial term, unweighted)")
        axes[1].set_title("adversarial losses")
    for axis in axes:
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path


def make_gif(frames: list, out_path: Path, width: int = 384, seconds_per_frame: float = 0.25) -> Path | None:
    """The sample grids in order as an animated GIF (the last frame held longer)."""
    if not frames:
        return None
    images = []
    for path in frames:
        image = Image.open(path).convert("RGB")
        height = round(image.height * width / image.width)
        images.append(image.resize((width, height), Image.LANCZOS))
    durations = [int(seconds_per_frame * 1000)] * len(images)
    durations[-1] = 2000
    images[0].save(out_path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)
    return out_path
