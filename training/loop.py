"""``train``: the training loop. Data in, checkpoints, logs and pictures out into the run folder
(training/run_folder.py says what it holds); the maths is in loss.py/step_*.py."""

import signal
import time
from pathlib import Path

import numpy as np

from facegen import model_folder
from training import run_folder
from training.config import load_config, resume_changes
from training.usage_error import UsageError
from training.runlog import RunLog
from training.timestamps import utc_now

def add_arguments(parser):
    parser.add_argument("--data", required=True, type=Path,
                        help="a cache written by `prepare`, or a CelebA-layout folder (prepared once and cached)")
    parser.add_argument("--out", required=True, type=Path, help="run folder for checkpoints, logs and samples")
    parser.add_argument("--config", type=Path, help="JSON file of training settings (see training/config.py)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="train until this many generator steps in all")
    length.add_argument("--epochs", type=float, help="train until this many epochs in all")
    parser.add_argument("--max-seconds", type=float,
                        help="stop (with a checkpoint) after this much training time in this session")
    parser.add_argument("--max-cpu-seconds", type=float,
                        help="stop (with a checkpoint) after this process has used this much CPU time in this "
                             "session (all cores together): a fair budget for runs compared on a shared machine")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--batch-size", type=int, help="override the config's batch_size")
    parser.add_argument("--sample-every", type=int, default=1, metavar="EPOCHS",
                        help="write the fixed-seed sample grid every this many epochs (default 1)")
    parser.add_argument("--distribute", action="store_true",
                        help="data-parallel over all visible devices (keras.distribution.DataParallel; JAX backend)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where a data folder is prepared to (default $FACEGEN_CACHE_DIR or ~/.cache/facegen)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def _positive(value, flag):
    if value is not None and value <= 0:
        raise UsageError(f"{flag} must be positive, got {value}")


def run(args) -> int:
    for value, flag in ((args.steps, "--steps"), (args.epochs, "--epochs"), (args.max_seconds, "--max-seconds"),
                        (args.max_cpu_seconds, "--max-cpu-seconds"),
                        (args.batch_size, "--batch-size"), (args.sample_every, "--sample-every")):
        _positive(value, flag)
    if args.steps is None and args.epochs is None and args.max_seconds is None and args.max_cpu_seconds is None:
        raise UsageError("say how long to train: --steps N, --epochs N, --max-seconds S or --max-cpu-seconds S")
    run_dir: Path = args.out
    config_changes = {}
    config_file = run_dir / run_folder.CONFIG
    from training import checkpoint

    if args.resume:
        if not checkpoint.has_state(run_dir):
            raise UsageError(f"--resume: {run_dir} holds no checkpoint to resume from")
        config = load_config(config_file)
        if args.batch_size is not None and args.batch_size != config.batch_size:
            raise UsageError(f"--batch-size {args.batch_size}: {run_dir} trains with batch size {config.batch_size} "
                             "(its epoch order and step count depend on it); resume without --batch-size, or start a "
                             "new run in another folder")
        if args.config is not None:
            asked = load_config(args.config, batch_size=args.batch_size)
            config_changes = resume_changes(config, asked)
            config = asked
    else:
        if checkpoint.has_state(run_dir):
            raise UsageError(f"--out: {run_dir} already holds a training run; pass --resume to continue it, "
                             "or choose another folder (nothing was overwritten)")
        config = load_config(args.config, batch_size=args.batch_size)
    if not args.data.exists():
        raise UsageError(f"--data: no such file or folder: {args.data}")
    return Training(config, run_dir, args.data, resume=args.resume, steps=args.steps, epochs=args.epochs,
                    max_seconds=args.max_seconds, max_cpu_seconds=args.max_cpu_seconds, sample_every=args.sample_every,
                    distribute=args.distribute, cache_dir=args.cache_dir, progress=not args.no_progress,
                    config_changes=config_changes).run()


class Training:
    """One training session of the run in ``run_dir``, from plain values (as StyleGAN3's ``training_loop(**kwargs)``),
    so a script or a test drives the loop as ``train`` does; ``run(args)`` above translates the flags.

    data: a cache file or a face-data folder (prepared into ``cache_dir``, default data.user_cache_dir()); resume:
    continue from the run's checkpoint; steps, epochs: train until this many in all; max_seconds, max_cpu_seconds:
    stop with a checkpoint after this much wall-clock or CPU time in this session (None: no limit); sample_every:
    epochs between sample grids; distribute: data-parallel over every visible device (JAX); progress: a progress bar
    rather than log lines; config_changes: {setting: [old, new]} a resumed run's --config changed
    (config.resume_changes), written to config.json and recorded in run.json with the step they start at.
    """

    def __init__(self, config, run_dir, data, *, resume: bool = False, steps: int | None = None,
                 epochs: float | None = None, max_seconds: float | None = None, max_cpu_seconds: float | None = None,
                 sample_every: int = 1, distribute: bool = False, cache_dir=None, progress: bool = True,
                 config_changes: dict | None = None):
        self.config, self.run_dir, self.data = config, Path(run_dir), Path(data)
        self.resume, self.steps, self.epochs = resume, steps, epochs
        self.max_seconds, self.max_cpu_seconds = max_seconds, max_cpu_seconds
        self.sample_every, self.distribute = sample_every, distribute
        self.cache_dir, self.progress = cache_dir, progress
        self.config_changes = config_changes or {}
        self.stop_requested = False
        self.runlog = None

    # -- setup ---------------------------------------------------------------------------------------------
    def load_data(self):
        from training.data import dataset_licence, open_dataset, training_rows, user_cache_dir

        config = self.config
        cache_dir = self.cache_dir or user_cache_dir()
        cache = open_dataset(self.data, config.resolution, cache_dir)
        if cache.images.shape[1] != config.resolution:
            raise UsageError(f"--data: images are {cache.images.shape[1]}px but the config trains at "
                             f"{config.resolution}px; prepare the data with --size {config.resolution}")
        names = {name.lower(): i for i, name in enumerate(cache.attribute_names)}
        missing = [a for a in config.attributes if a.lower() not in names]
        if missing:
            raise UsageError(f"config attributes {missing} are not in the data; it has {list(cache.attribute_names)}")
        train = training_rows(cache.partition)
        columns = [names[a.lower()] for a in config.attributes]
        self.images = np.ascontiguousarray(cache.images[train])
        self.attributes = np.ascontiguousarray(cache.attributes[train][:, columns], dtype=np.float32)
        if len(self.images) < config.batch_size * config.d_steps:
            raise UsageError(f"the data has {len(self.images)} training images, fewer than one batch "
                             f"({config.batch_size} x d_steps {config.d_steps}); lower --batch-size")
        meta = cache.meta
        self.dataset_info = {
            "name": meta.get("dataset_name", Path(str(self.data)).stem), "synthetic": bool(meta.get("synthetic")),
            "images": int(len(self.images)), "total_images": int(len(cache.images)),
            "resolution": int(config.resolution), "source": str(meta.get("source", self.data)),
            # The cache file trained on: export measures an encoder's framing template on its training images.
            "cache": str(Path(cache.path).resolve()) if cache.path is not None else None,
            "layout": meta.get("layout"), "crop": meta.get("crop"), "skipped": meta.get("skipped"),
            "split": meta.get("split"),  # how train/validation/test were made (official and identity-disjoint, or seeded)
            # caches prepared before the licence was recorded get it from what they are
            "licence": meta.get("licence") or dataset_licence(bool(meta.get("synthetic"))),
        }
        if self.dataset_info["synthetic"]:
            self.dataset_info["note"] = ("procedural faces rendered by `python -m training synth`, not photographs "
                                         "of people: no real face data set was available for training")

    def setup(self):
        import keras

        from training.accelerator import describe_accelerator
        from training.gan_state import build_models

        config = self.config
        self.device_line = describe_accelerator()
        print(self.device_line, flush=True)
        distribution = None
        if self.distribute:
            if keras.backend.backend() != "jax":
                raise UsageError("--distribute needs KERAS_BACKEND=jax (keras.distribution's data parallelism)")
            devices = keras.distribution.list_devices()
            if config.batch_size % len(devices):
                raise UsageError(f"--batch-size {config.batch_size} must be a multiple of the {len(devices)} devices")
            distribution = keras.distribution.DataParallel(devices=devices)
            keras.distribution.set_distribution(distribution)
            print(f"data-parallel over {len(devices)} devices", flush=True)
        self.models = build_models(config)
        self.start_step, self.seconds_before, self.cpu_seconds_before = 0, 0.0, 0.0
        if self.resume:
            from training import checkpoint

            groups, meta = checkpoint.load_state(self.run_dir)
            self.models.load_groups(groups)
            self.start_step, self.seconds_before = int(meta["step"]), float(meta.get("seconds", 0.0))
            self.cpu_seconds_before = float(meta.get("cpu_seconds", 0.0))
            print(f"resuming {self.run_dir} at step {self.start_step}", flush=True)
        elif config.grow_from:
            from training.grow import warm_start

            copied = warm_start(self.models, config)
            print(f"grown from {config.grow_from}: " + "; ".join(f"{k} {', '.join(v)}" for k, v in copied.items()),
                  flush=True)
        backend = keras.backend.backend()
        if backend == "jax":
            from training.step_jax import Trainer
        elif backend == "tensorflow":
            from training.step_tensorflow import Trainer
        else:
            raise UsageError(f"KERAS_BACKEND={backend} is not supported: use tensorflow or jax")
        self.trainer = Trainer(config, self.images, self.attributes, self.models, distribution)
        self.backend = backend
        self.mixed_precision = keras.config.dtype_policy().name
        self.devices = len(keras.distribution.list_devices()) if backend == "jax" else 1

    def write_run_files(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / run_folder.SAMPLES).mkdir(exist_ok=True)
        if not self.resume or self.config_changes:
            self.config.save(self.run_dir / run_folder.CONFIG)
        from training.networks import count_parameters

        info = {
            "dataset": self.dataset_info,
            "attribute_frequencies": [float(f) for f in self.attributes.mean(axis=0)] if self.config.num_attributes else [],
            "attribute_table": model_folder.attribute_table(self.attributes),
            "training": {"backend": self.backend, "device": self.device_line, "devices": self.devices,
                         "precision": self.mixed_precision,
                         "generator_parameters": count_parameters(self.models.generator),
                         "discriminator_parameters": count_parameters(self.models.discriminator),
                         **({"encoder_parameters": count_parameters(self.models.encoder)}
                            if self.models.encoder is not None else {})},
        }
        # keep history (e.g. the first session's start time) across resumes
        info["training"] = {**run_folder.read_run_info(self.run_dir).get("training", {}), **info["training"]}
        info["training"].setdefault("started", utc_now())
        if self.config_changes:
            info["training"]["config_changes"] = info["training"].get("config_changes", []) + [
                {"step": self.start_step, "at": utc_now(), "changed": self.config_changes}]
        run_folder.write_run_info(self.run_dir, info)

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> int:
        from training.batches import BatchSchedule

        self.load_data()
        self.setup()
        self.write_run_files()
        self.schedule = BatchSchedule(self.config, len(self.images))
        self.steps_per_epoch = self.schedule.steps_per_epoch
        self.sample_z, self.sample_a = self.sample_inputs()  # before anything that may draw the sample grid
        total = self.schedule.total_steps(self.steps, self.epochs)
        if self.start_step >= total:
            print(f"the run is already at step {self.start_step} of {total}: nothing to do")
            self.finish(self.start_step)
            return 0
        if self.resume:
            self.forget_after(self.start_step)
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        step = self.start_step
        self.runlog = RunLog(self.run_dir, self.start_step, self.resume)
        try:
            step = self.train(total)
        finally:
            self.runlog.close()
            self.runlog = None
            signal.signal(signal.SIGTERM, previous)
        self.finish(step)
        return 0

    def train(self, total: int) -> int:
        """Steps until ``total``, --max-seconds, Ctrl-C or SIGTERM; always ends with a checkpoint. -> last step."""
        config, step = self.config, self.start_step
        progress = self._progress_bar(total)
        started = self.window_start = time.monotonic()
        self.cpu_started = time.process_time()
        self.window_step = step
        try:
            while step < total and not self.stop_requested:
                real_index, cond_index = self.schedule.indices(step)
                metrics = self.trainer.train_step(real_index, cond_index, step)
                step += 1
                if progress is not None:
                    progress.update(1)
                seconds = self.seconds_before + time.monotonic() - started
                if step % config.log_every == 0 or step == total:
                    self.log_scalars(step, metrics, seconds, progress)
                if step % self.steps_per_epoch == 0 and (step // self.steps_per_epoch) % self.sample_every == 0:
                    self.save_samples(step)
                if step % config.checkpoint_every == 0:
                    self.save_checkpoint(step, seconds)
                if self.max_seconds is not None and time.monotonic() - started >= self.max_seconds:
                    print(f"\n--max-seconds {self.max_seconds:g} reached at step {step}", flush=True)
                    break
                if (self.max_cpu_seconds is not None
                        and time.process_time() - self.cpu_started >= self.max_cpu_seconds):
                    print(f"\n--max-cpu-seconds {self.max_cpu_seconds:g} reached at step {step}", flush=True)
                    break
        except KeyboardInterrupt:
            print(f"\ninterrupted at step {step}: saving a checkpoint", flush=True)
        finally:
            if progress is not None:
                progress.close()
            if step > self.start_step:
                self.save_checkpoint(step, self.seconds_before + time.monotonic() - started)
        return step

    def _progress_bar(self, total: int):
        if not self.progress or total >= 2**62:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=self.start_step, unit="step", dynamic_ncols=True)

    def log_scalars(self, step: int, metrics, seconds: float, progress) -> None:
        values = self.trainer.to_host(metrics)  # waits for the device: only every log_every steps
        now = time.monotonic()
        rate = (step - self.window_step) * self.config.batch_size / max(now - self.window_start, 1e-9)
        self.window_start, self.window_step = now, step
        values.update(step=step, epoch=round(step / self.steps_per_epoch, 3), seconds=round(seconds, 2),
                      cpu_seconds=round(self._cpu_seconds(), 1), images_per_second=round(rate, 1))
        self.runlog.scalars(step, values)
        encoder = {k: values[k] for k in ("e_reconstruction", "e_cycle", "e_attribute_accuracy") if k in values}
        if progress is not None:
            progress.set_postfix(d=f"{values['d_loss']:.3f}", g=f"{values['g_loss']:.3f}",
                                 **{k[2:5]: f"{v:.3f}" for k, v in encoder.items()}, img_s=f"{rate:,.0f}")
        else:
            print(f"step {step} epoch {values['epoch']:.2f} d_loss {values['d_loss']:.4f} "
                  f"g_loss {values['g_loss']:.4f} " + "".join(f"{k} {v:.4f} " for k, v in encoder.items())
                  + f"images/s {rate:,.0f}", flush=True)

    def forget_after(self, step: int) -> None:
        """Sample grids drawn after the checkpoint belong to steps this run lost when it was killed: drop them."""
        for path in run_folder.sample_frames(self.run_dir):
            if run_folder.sample_step(path) > step:
                path.unlink()

    def _on_sigterm(self, signum, frame):
        self.stop_requested = True  # finish the step in flight, checkpoint, exit cleanly

    def sample_inputs(self):
        side = self.config.sample_grid
        rng = np.random.RandomState(1234)
        z = rng.standard_normal((side * side, self.config.latent_size)).astype(np.float32)
        a = self.attributes[rng.randint(0, len(self.attributes), side * side)]
        return z, a

    def save_samples(self, step: int) -> Path:
        from training.pictures import grid, to_uint8

        images = to_uint8(self.trainer.generate(self.sample_z, self.sample_a))
        path = run_folder.sample_path(self.run_dir, step)
        picture = grid(images, self.config.sample_grid)
        picture.save(path)
        if self.runlog is not None:
            self.runlog.image(step, "samples", np.asarray(picture))
        return path

    def _cpu_seconds(self) -> float:
        """CPU time (all cores) this run has used in training, over every session."""
        return self.cpu_seconds_before + time.process_time() - self.cpu_started

    def save_checkpoint(self, step: int, seconds: float) -> None:
        from training import checkpoint

        self.trainer.pull()
        checkpoint.save_state(self.run_dir, self.models.checkpoint_groups(),
                              {"step": int(step), "epoch": round(step / self.steps_per_epoch, 4),
                               "seconds": round(seconds, 2), "cpu_seconds": round(self._cpu_seconds(), 1),
                               "saved": utc_now()})

    def finish(self, step: int) -> None:
        from training.pictures import make_gif, plot_losses

        if not run_folder.sample_path(self.run_dir, step).is_file():
            self.save_samples(step)
        frames = run_folder.sample_frames(self.run_dir)
        if len(frames) > 120:  # keep the GIF small: an even spread of frames, always with the last one
            frames = [frames[round(i * (len(frames) - 1) / 119)] for i in range(120)]
        make_gif(frames, self.run_dir / run_folder.TRAINING_GIF)
        if (self.run_dir / run_folder.LOG).is_file():
            plot_losses(self.run_dir / run_folder.LOG, self.run_dir / run_folder.LOSS_CURVES)
        print(f"run folder: {self.run_dir} (samples/, loss_curves.png, training.gif, checkpoint/)", flush=True)
