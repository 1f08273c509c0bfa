"""Training configuration: plain data, loaded from JSON, checked once, written beside every run.

Every stabiliser the seeds found useful is a switch here, so an experiment is a JSON file, not a code change.
"""

import dataclasses
import json
import math
from pathlib import Path

from training.usage_error import UsageError

# The attributes the default model is conditioned on: the ones a face renderer can draw and a viewer can see.
DEFAULT_ATTRIBUTES = [
    "Male", "Young", "Smiling", "Eyeglasses", "Wearing_Hat", "Bald", "Black_Hair", "Blond_Hair",
    "Brown_Hair", "Gray_Hair", "No_Beard", "Mustache", "Pale_Skin", "Bangs", "Wearing_Lipstick",
    "Mouth_Slightly_Open",
]

ARCHITECTURES = ("facegen", "artiface")
LOSSES = ("nonsaturating", "hinge")
CONDITIONING = ("projection", "acgan", "both")
RECONSTRUCTION_LOSSES = ("l1", "l2")
AUGMENTATIONS = ("color", "translation", "cutout")  # stabilisers.augment implements each
# Settings a resumed run may change (`train --resume --config`): they change what the next steps do, not the shape
# of the networks, the data order or the optimisers' state. run.json records each change with its step.
RESUMABLE_SETTINGS = ("augment", "checkpoint_every", "log_every")


@dataclasses.dataclass
class TrainConfig:
    # Network shape. channels(res) = min(max_width, width * resolution // res): wide at 4x4, narrow at full size.
    architecture: str = "facegen"  # "facegen" (ours) or "artiface" (the seeds' DCGAN, kept as a baseline)
    resolution: int = 64
    latent_size: int = 128
    attributes: list = dataclasses.field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))  # [] = unconditional
    g_width: int = 64
    g_max_width: int = 512
    d_width: int = 64
    d_max_width: int = 512
    minibatch_std: bool = True  # D sees the batch's feature spread: a cheap guard against mode collapse
    g_min_width: int = 1  # floor on G's channels (the 128 px block of a grown 64 px model keeps its to_rgb width)
    d_min_width: int = 1  # floor on D's and the encoder's channels

    # Growing (ProGAN): start G (and the encoder) from a trained model folder at half this resolution, and fade the
    # new top block in over fade_in_steps, so the CPU hours already spent on the smaller model are kept.
    grow_from: str = ""  # a model folder (SavedModel + manifest) at resolution / 2; "" trains from scratch
    fade_in_steps: int = 0  # > 0: G's output and D's real images blend from the upsampled half-size image over this
    # A grown G meets a D that starts afresh: G's update is held (zero gradients; the encoder still learns) for
    # this many steps while D learns to judge, so G's first gradients come from a D that knows faces. The fade
    # starts after it.
    d_warmup_steps: int = 0

    # Optimisation.
    batch_size: int = 128
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.99
    loss: str = "nonsaturating"  # or "hinge"
    mixed_precision: str = "auto"  # "auto": bfloat16 on a GPU, float32 on the CPU; or "on" / "off"

    # Stabilisers, each a switch.
    label_smoothing: float = 0.1  # one-sided: D's target for real images is 1 - label_smoothing
    label_flip: float = 0.0  # probability of swapping real/fake targets for D
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs at step 0, annealed linearly ...
    instance_noise_steps: int = 10000  # ... to zero at this step
    spectral_norm: bool = True  # spectral normalisation of D's layers
    d_steps: int = 1  # D updates per G update
    d_accuracy_threshold: float = 0.0  # > 0: skip D's update while its running accuracy is above this
    conditioning: str = "both"  # "projection" (D's projection head), "acgan" (auxiliary classifier), "both"
    ac_weight: float = 1.0  # weight of the auxiliary attribute loss
    ema_decay: float = 0.999  # EMA copy of G used for samples and export; 0 disables
    ema_start: int = 1000  # steps before the EMA starts tracking (G moves fast early on)
    subset: float = 1.0  # fraction of the training images drawn each epoch
    flip_images: bool = True  # random horizontal flips of real images
    # DiffAugment on everything D judges (stabilisers.augment): any of "color", "translation", "cutout". May be
    # switched on or off when a run is resumed (RESUMABLE_SETTINGS).
    augment: list = dataclasses.field(default_factory=list)

    # The encoder E (the AE-AC-GAN seed's): E(image) -> (z estimate, attribute logits), trained beside G so a photo
    # can be mapped into G's space and edited. Off by default: old configs and runs train exactly as before.
    # E mirrors D's shape (d_width, d_max_width) without spectral norm or minibatch std (a photo's code must not
    # depend on the batch it is encoded in). What each term updates: training/step_tensorflow.py's docstring.
    encoder: bool = False
    encoder_lr_ratio: float = 0.25  # E's learning rate = encoder_lr_ratio * g_lr (the seed found ~0.25 best)
    reconstruction_weight: float = 1.0  # |G(E_z(x), a) - x|: the real image rebuilt from its code and attributes
    reconstruction_loss: str = "l1"  # "l1" (mean absolute pixel error) or "l2" (mean squared)
    feature_weight: float = 0.0  # optional: mean squared distance of D's features of the rebuilt and the real image
    encoder_attribute_weight: float = 1.0  # BCE of E's attribute logits against the real attributes
    cycle_weight: float = 1.0  # latent cycle: mean squared error of E_z(G(z, a)) against z

    # Bookkeeping.
    seed: int = 0
    checkpoint_every: int = 1000  # steps; --resume after a kill loses at most this much
    log_every: int = 100  # steps between scalar log rows
    sample_grid: int = 8  # the fixed-seed sample grid is sample_grid x sample_grid

    @property
    def num_attributes(self) -> int:
        return len(self.attributes)

    def channels(self, res: int, width: int, max_width: int, min_width: int = 1) -> int:
        return int(max(min_width, min(max_width, width * self.resolution // res)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def validate(self) -> "TrainConfig":
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise UsageError(f"config: {message}")

        need(self.architecture in ARCHITECTURES, f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        need(self.resolution in (32, 64, 128), f"resolution must be 64 or 128 (32 for smoke tests), got {self.resolution}")
        if self.architecture == "artiface":
            need(self.resolution == 128, "the artiface baseline generates 128x128 images; set resolution to 128")
        need(self.latent_size >= 1, "latent_size must be at least 1")
        need(len(set(self.attributes)) == len(self.attributes), "attributes are listed twice")
        need(self.batch_size >= 2, "batch_size must be at least 2")
        need(self.loss in LOSSES, f"loss must be one of {LOSSES}")
        need(self.conditioning in CONDITIONING, f"conditioning must be one of {CONDITIONING}")
        need(self.mixed_precision in ("auto", "on", "off"), "mixed_precision must be auto, on or off")
        need(0.0 <= self.label_smoothing < 0.5, "label_smoothing must be in [0, 0.5)")
        need(0.0 <= self.label_flip < 0.5, "label_flip must be in [0, 0.5)")
        need(self.instance_noise >= 0, "instance_noise must be >= 0")
        need(self.d_steps >= 1, "d_steps must be at least 1")
        need(0.0 <= self.d_accuracy_threshold <= 1.0, "d_accuracy_threshold must be in [0, 1]")
        need(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")
        unknown = [name for name in self.augment if name not in AUGMENTATIONS]
        need(not unknown, f"augment: unknown {unknown}; choose from {list(AUGMENTATIONS)}")
        need(len(set(self.augment)) == len(self.augment), "augment names an augmentation twice")
        need(0.0 < self.subset <= 1.0, "subset must be in (0, 1]")
        need(self.checkpoint_every >= 1 and self.log_every >= 1, "checkpoint_every and log_every must be >= 1")
        need(min(self.g_width, self.d_width, self.g_max_width, self.d_max_width) >= 1, "widths must be >= 1")
        need(math.log2(self.resolution).is_integer(), "resolution must be a power of two")
        need(min(self.g_min_width, self.d_min_width) >= 1, "g_min_width and d_min_width must be >= 1")
        need(self.fade_in_steps >= 0, "fade_in_steps must be >= 0")
        need(self.d_warmup_steps >= 0, "d_warmup_steps must be >= 0")
        need(self.fade_in_steps == 0 or self.architecture == "facegen", "fade_in_steps needs the facegen architecture")
        need(not self.grow_from or self.architecture == "facegen", "grow_from needs the facegen architecture")
        need(isinstance(self.encoder, bool), "encoder must be true or false")
        need(self.encoder_lr_ratio > 0, "encoder_lr_ratio must be positive")
        need(self.reconstruction_loss in RECONSTRUCTION_LOSSES,
             f"reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}")
        for key in ("reconstruction_weight", "feature_weight", "encoder_attribute_weight", "cycle_weight"):
            need(getattr(self, key) >= 0, f"{key} must be >= 0")
        return self


def resume_changes(trained: TrainConfig, asked: TrainConfig) -> dict:
    """{setting: [trained value, asked value]} for a resumed run's --config; only RESUMABLE_SETTINGS may differ."""
    old, new = trained.to_dict(), asked.to_dict()
    changed = {key: [old[key], new[key]] for key in old if old[key] != new[key]}
    fixed = sorted(key for key in changed if key not in RESUMABLE_SETTINGS)
    if fixed:
        raise UsageError(f"--config differs from the config the run was trained with in {', '.join(fixed)}; a resumed "
                         f"run may change only {', '.join(RESUMABLE_SETTINGS)}: resume without --config, or start a "
                         "new run in another folder")
    return changed


def load_config(path=None, **overrides) -> TrainConfig:
    """A config from a JSON file (unknown keys are an error naming them), then keyword overrides."""
    values = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"--config: no such file: {path}")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UsageError(f"--config: {path} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise UsageError(f"--config: {path} must hold a JSON object")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"config: unknown key(s) {unknown}; known keys: {sorted(known)}")
    try:
        return TrainConfig(**values).validate()
    except TypeError as error:
        raise UsageError(f"config: {error}") from None
