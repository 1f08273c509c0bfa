"""``upsample``: train a 64 -> 128 upsampling stage on real photo pairs (issue 20's cheap route to 128 px).

The stage learns to undo the data preparation's downsizing: its input is a training photo as the 64 px cache holds
it (what the 64 px generator learned to draw), its target the same photo from the 128 px cache. Export puts it
behind a trained 64 px generator (``export --upsampler RUN --base MODEL_DIR``), so the 64 px model's faces keep
their people and gain a learned enlargement instead of the service's Lanczos resize.

Network: input 64x64x3 in [-1, 1] -> Conv 3x3 -> (residual block: Conv 3x3, ReLU, Conv 3x3) x blocks ->
Conv 3x3 to 12 channels -> depth-to-space 2 -> added to the input's bilinear enlargement. The stage starts as the
bilinear enlargement (last conv zero) and learns the detail bilinear loses. Loss: mean absolute error on pixels
("supervised"); with ``adversarial`` > 0 also that weight times the non-saturating GAN loss of a small patch
critic (Conv 4x4/2 x 3 -> Conv 3x3 -> a 16x16 map of real/fake logits at 128 px) that learns real 128 px photos from
the stage's enlargements, so the stage is pushed towards photo-like detail where the average of the possible
answers (what L1 alone learns) is soft. With ``fakes_from`` (a 64 px model folder: the base the stage will be
exported behind) the critic also judges that generator's faces as the stage enlarges them, half of every fake
batch, and the stage learns from it too: what it will enlarge in service is those faces, not photos. A supervised run
can be switched to adversarial (and to fakes_from, and an EMA of the stage's weights, which export then uses: an
adversarial stage's weights wander from step to step as a GAN generator's do) on resume.
Checkpoints are training/checkpoint.py's (groups "u", "u_opt"; "d", "d_opt" once adversarial; "u_ema" with an
EMA), so a run stops and resumes exactly.
"""

import dataclasses
import hashlib
import json
import signal
import time
from pathlib import Path

import numpy as np

from training.arguments import at_least
from training import run_folder
from training.run_folder import LOG as LOG_FILE, LOSS_CURVES, UPSAMPLE_CONFIG as CONFIG_FILE
from training.usage_error import UsageError


@dataclasses.dataclass
class UpsampleConfig:
    small: int = 64  # the input side (the small cache's); the output is twice it
    width: int = 32
    blocks: int = 4
    batch_size: int = 32
    learning_rate: float = 5e-4
    adversarial: float = 0.0  # weight of the critic's loss beside L1 (0: supervised only)
    fakes_from: str | None = None  # a model folder whose generator's faces, enlarged, the critic also judges
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the stage's weights, which export uses
    d_width: int = 32
    d_learning_rate: float = 2e-4
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 25


LOG_HEADER = "step,l1,g_adversarial,d_loss,cpu_seconds"


def add_arguments(parser):
    parser.add_argument("--small", type=Path, required=True, metavar="CACHE.npz",
                        help="the 64 px training cache (`prepare --size 64`): the stage's inputs")
    parser.add_argument("--large", type=Path, required=True, metavar="CACHE.npz",
                        help="the 128 px cache of the same data set (`prepare --size 128`): its targets, row for row")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log.csv, upsample.json)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument("--steps", type=at_least(1), help="train until this many steps in all")
    parser.add_argument("--max-cpu-seconds", type=at_least(1.0), help="stop after this much process CPU time")
    parser.add_argument("--width", type=at_least(4), default=UpsampleConfig.width, help="channels (32)")
    parser.add_argument("--blocks", type=at_least(0), default=UpsampleConfig.blocks, help="residual blocks (4)")
    parser.add_argument("--batch-size", type=at_least(1), default=UpsampleConfig.batch_size, help="batch (32)")
    parser.add_argument("--fakes-from", type=Path, metavar="MODEL_DIR",
                        help="with --adversarial: the critic also judges this model's generated faces as the stage "
                             "enlarges them (the base it will be exported behind); may be switched on with --resume")
    parser.add_argument("--ema-decay", type=at_least(0.0), metavar="DECAY",
                        help="keep an exponential moving average of the stage's weights (0.998: a half-life of about "
                             "350 steps), which export uses; may be switched on with --resume (it starts from the "
                             "weights then)")
    parser.add_argument("--adversarial", type=at_least(0.0), metavar="WEIGHT",
                        help="weight of the patch critic's loss beside L1 (default 0: supervised only); on --resume "
                             "it switches a run (recorded in upsample.json with the step)")


def layer_seed(config: UpsampleConfig, name: str) -> int:
    """Each layer's initial weights from (config.seed, its name), as training/networks.py's ``init`` seeds G's and
    D's: runs repeat, and no two layers of one shape start alike."""
    digest = hashlib.sha256(f"{config.seed}/upsampler/{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1


def build_upsampler(config: UpsampleConfig):
    """The stage as a Keras model: [N, small, small, 3] in [-1, 1] -> [N, 2 small, 2 small, 3]."""
    import keras
    from keras import layers

    def conv(filters, name, zero=False):
        init = "zeros" if zero else keras.initializers.HeNormal(seed=layer_seed(config, name))
        return layers.Conv2D(filters, 3, padding="same", kernel_initializer=init, name=name)

    images = keras.Input((config.small, config.small, 3), name="small")
    x = conv(config.width, "head")(images)
    for i in range(config.blocks):
        y = conv(config.width, f"block{i}_a")(x)
        y = conv(config.width, f"block{i}_b")(layers.ReLU()(y))
        x = x + y
    detail = conv(12, "tail", zero=True)(layers.ReLU()(x))
    detail = layers.Lambda(depth_to_space, name="to_space")(detail)
    base = layers.UpSampling2D(2, interpolation="bilinear", name="bilinear")(images)
    return keras.Model(images, base + detail, name="upsampler")


def depth_to_space(t):
    """[N, H, W, 4C] -> [N, 2H, 2W, C]: each pixel's channels become its 2x2 block (sub-pixel convolution)."""
    from keras import ops

    n, h, w, c = ops.shape(t)
    t = ops.reshape(t, (n, h, w, 2, 2, c // 4))
    t = ops.transpose(t, (0, 1, 3, 2, 4, 5))
    return ops.reshape(t, (n, h * 2, w * 2, c // 4))


def build_critic(config: UpsampleConfig):
    """The patch critic: [N, 2 small, 2 small, 3] in [-1, 1] -> [N, small / 4, small / 4, 1] real/fake logits."""
    import keras
    from keras import layers

    images = keras.Input((2 * config.small, 2 * config.small, 3), name="large")
    x = images
    for i, width in enumerate((config.d_width, 2 * config.d_width, 4 * config.d_width)):
        x = layers.Conv2D(width, 4, strides=2, padding="same", name=f"critic{i}",
                          kernel_initializer=keras.initializers.HeNormal(seed=layer_seed(config, f"critic{i}")))(x)
        x = layers.LeakyReLU(0.2)(x)
    logits = layers.Conv2D(1, 3, padding="same", name="critic_logits",
                           kernel_initializer=keras.initializers.HeNormal(seed=layer_seed(config,
                                                                                          "critic_logits")))(x)
    return keras.Model(images, logits, name="critic")


def paired_caches(small_path: Path, large_path: Path):
    """(small cache, large cache, training rows): the two caches must hold the same photos in the same order."""
    from training.data import load_cache, training_rows

    for flag, path in (("--small", small_path), ("--large", large_path)):
        if not Path(path).is_file():
            raise UsageError(f"{flag}: no such cache {path}")
    small, large = load_cache(small_path), load_cache(large_path)
    if small.images.shape[1] * 2 != large.images.shape[1]:
        raise UsageError(f"--large must hold photos twice the side of --small's: {large.images.shape[1]} px against "
                         f"{small.images.shape[1]} px")
    if len(small.filenames) != len(large.filenames) or list(small.filenames) != list(large.filenames):
        raise UsageError("--small and --large hold different photos (their file lists differ): prepare both from "
                         "the same data folder")
    return small, large, training_rows(small.partition)


class UpsampleRun:
    """The stage, its optimiser and its place in training; ``train`` runs steps until a stop and checkpoints."""

    def __init__(self, out: Path, config: UpsampleConfig):
        import keras

        self.out, self.config = Path(out), config
        self.model = build_upsampler(config)
        self.optimizer = keras.optimizers.Adam(config.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        self.ema = None
        if config.ema_decay > 0:
            self.ema = build_upsampler(config)
            self.ema.set_weights(self.model.get_weights())
        self.critic = self.critic_optimizer = None
        if config.adversarial > 0:
            self.critic = build_critic(config)
            self.critic_optimizer = keras.optimizers.Adam(config.d_learning_rate, beta_1=0.5)
            self.critic_optimizer.build(self.critic.trainable_variables)
        self.step, self.cpu_before = 0, 0.0
        self.stop_reason = None

    def begin(self) -> None:
        """A new run folder: its config and the log's header."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        (self.out / LOG_FILE).write_text(LOG_HEADER + "\n")

    PREVIEW_SEEDS = 16  # the service's faces for seeds 0-15 of the fakes_from model, enlarged at every checkpoint

    def open_base(self):
        """(manifest, pixels function, the loaded SavedModel to keep alive) of the fakes_from model, loaded once for
        the critic's fakes and the frames; None without fakes_from."""
        if not self.config.fakes_from:
            return None
        from facegen import model_folder

        loaded = model_folder.load_saved_model(self.config.fakes_from)
        return model_folder.read_manifest(self.config.fakes_from), model_folder.pixels_function(loaded), loaded

    def preview_faces(self, base):
        """The fakes_from model's faces for seeds 0..PREVIEW_SEEDS-1 by the service's seed rule (float [-1, 1]), or
        None: a run without fakes_from draws no frames (photos of the data set must not end up in a card's GIF)."""
        if base is None:
            return None
        from training.card import service_inputs

        manifest, pixels, _ = base
        return pixels(*service_inputs(manifest, range(self.PREVIEW_SEEDS))).numpy()

    def draw_frame(self, preview) -> None:
        """samples/step_N.png: the preview faces as the stage (its EMA where kept) enlarges them now."""
        from training import run_folder
        from training.pictures import grid, to_uint8

        stage = self.ema if self.ema is not None else self.model
        path = run_folder.sample_path(self.out, self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        grid(to_uint8(stage.predict_on_batch(preview)), 8).save(path)

    def save(self) -> None:
        from training import checkpoint

        meta = {"step": self.step, "cpu_seconds": round(self.cpu_seconds(), 1), "kind": "upsampler"}
        groups = {"u": self.model.weights, "u_opt": self.optimizer.variables}
        if self.critic is not None:
            groups.update(d=self.critic.weights, d_opt=self.critic_optimizer.variables)
        if self.ema is not None:
            groups["u_ema"] = self.ema.weights
        checkpoint.save_state(self.out, {name: [v.numpy() for v in values] for name, values in groups.items()}, meta)

    def load(self) -> None:
        from training import checkpoint

        groups, meta = checkpoint.load_state(self.out)
        if meta.get("kind") != "upsampler":
            raise UsageError(f"--out {self.out} holds a checkpoint that is not an upsampling stage's")
        checkpoint.assign(self.model.weights, groups["u"], "upsampler")
        checkpoint.assign(self.optimizer.variables, groups["u_opt"], "upsampler optimiser")
        if self.critic is not None and "d" in groups:  # else the run has just been switched: a fresh critic
            checkpoint.assign(self.critic.weights, groups["d"], "critic")
            checkpoint.assign(self.critic_optimizer.variables, groups["d_opt"], "critic optimiser")
        if self.ema is not None:  # switched on now: the average starts from the weights as they are
            checkpoint.assign(self.ema.weights, groups.get("u_ema", groups["u"]), "upsampler EMA")
        self.step, self.cpu_before = int(meta["step"]), float(meta.get("cpu_seconds", 0.0))

    def update_ema(self) -> None:
        decay = self.config.ema_decay
        for average, weight in zip(self.ema.weights, self.model.weights):
            average.assign(decay * average + (1.0 - decay) * weight)

    def cpu_seconds(self) -> float:
        return self.cpu_before + time.process_time() - self.cpu_started

    def batch(self, small, large, rows):
        """The step's batch, drawn from (seed, step) alone, so a resumed run sees what an unbroken one would."""
        from facegen.model_folder import from_uint8

        pick = np.sort(np.random.RandomState([self.config.seed, self.step]).choice(rows, self.config.batch_size,
                                                                                   replace=False))
        return from_uint8(np.asarray(small.images[pick])), from_uint8(np.asarray(large.images[pick]))

    def step_function(self):
        """One tf.function step (x small, y large, g the base's faces or an empty batch) -> (L1, G's adversarial
        loss, the critic's loss): the critic learns first on this batch's photos and (held) enlargements, then the
        stage on L1 (photo pairs only) plus its weighted loss."""
        import tensorflow as tf

        model, optimizer, critic, weight = self.model, self.optimizer, self.critic, self.config.adversarial

        @tf.function(jit_compile=False)
        def supervised(x, y, g):
            with tf.GradientTape() as tape:
                l1 = tf.reduce_mean(tf.abs(model(x, training=True) - y))
            optimizer.apply_gradients(zip(tape.gradient(l1, model.trainable_variables), model.trainable_variables))
            return l1, tf.constant(float("nan")), tf.constant(float("nan"))

        @tf.function(jit_compile=False)
        def adversarial(x, y, g):
            # g: the base generator's faces (fakes_from), or none; the fakes are the stage's enlargements of both.
            n = tf.shape(x)[0]
            fake = tf.stop_gradient(model(tf.concat([x, g], 0), training=True))
            with tf.GradientTape() as tape:
                d_loss = (tf.reduce_mean(tf.nn.softplus(-critic(y, training=True))) +
                          tf.reduce_mean(tf.nn.softplus(critic(fake, training=True))))
            grads = tape.gradient(d_loss, critic.trainable_variables)
            self.critic_optimizer.apply_gradients(zip(grads, critic.trainable_variables))
            with tf.GradientTape() as tape:
                out = model(tf.concat([x, g], 0), training=True)
                l1 = tf.reduce_mean(tf.abs(out[:n] - y))
                g_adv = tf.reduce_mean(tf.nn.softplus(-critic(out, training=False)))
                loss = l1 + weight * g_adv
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return l1, g_adv, d_loss

        return supervised if critic is None else adversarial

    def base_faces(self, base, small, rows):
        """faces(step) -> the fakes_from model's faces for this step (float [B, s, s, 3] in [-1, 1]: noise and real
        training attribute rows (``rows`` of ``small``) drawn from (seed, step) alone), or an empty batch without
        fakes_from."""
        from training.evaluate import attribute_columns

        empty = np.zeros((0, self.config.small, self.config.small, 3), np.float32)
        if base is None:
            return lambda step: empty
        manifest, pixels, _ = base
        columns = attribute_columns(manifest["attributes"], small.attribute_names, what="--fakes-from: the model")
        attributes = np.asarray(small.attributes)[:, columns].astype(np.float32)
        latent, batch = int(manifest["latent_size"]), self.config.batch_size

        def faces(step):
            stream = np.random.RandomState([self.config.seed, step, 1])
            noise = stream.standard_normal((batch, latent)).astype(np.float32)
            attrs = attributes[stream.choice(rows, batch)]
            return pixels(noise, attrs).numpy()

        return faces

    def train(self, small, large, rows, steps=None, max_cpu_seconds=None, progress=True) -> int:
        step_fn = self.step_function()
        base = self.open_base()  # held for the whole session: the functions below need the loaded SavedModel
        faces = self.base_faces(base, small, rows)
        preview = self.preview_faces(base)
        self.stop_reason = None
        self.cpu_started = time.process_time()
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        log = (self.out / LOG_FILE).open("a")
        losses = []
        try:
            while self.stop_reason is None:
                if steps is not None and self.step >= steps:
                    self.stop_reason = f"step {steps} reached"
                    break
                if max_cpu_seconds is not None and time.process_time() - self.cpu_started >= max_cpu_seconds:
                    self.stop_reason = f"--max-cpu-seconds {max_cpu_seconds:g} reached"
                    break
                x, y = self.batch(small, large, rows)
                losses.append([float(v) for v in step_fn(x, y, faces(self.step))])
                if self.ema is not None:
                    self.update_ema()
                self.step += 1
                if self.step % self.config.log_every == 0:
                    l1, g_adv, d_loss = np.mean(losses, axis=0)
                    log.write(f"{self.step},{l1:.5f},{'' if np.isnan(g_adv) else f'{g_adv:.4f}'},"
                              f"{'' if np.isnan(d_loss) else f'{d_loss:.4f}'},{self.cpu_seconds():.1f}\n")
                    log.flush()
                    if progress:
                        print(f"step {self.step}: L1 {l1:.4f}" + ("" if np.isnan(g_adv) else
                              f", G adversarial {g_adv:.3f}, critic {d_loss:.3f}") +
                              f", {self.cpu_seconds():.0f} CPU-s", flush=True)
                    losses = []
                if self.step % self.config.checkpoint_every == 0:
                    self.save()
                    if preview is not None:
                        self.draw_frame(preview)
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
        finally:
            signal.signal(signal.SIGTERM, previous)
            log.close()
            self.save()
        return self.step

    def _on_sigterm(self, *_):
        self.stop_reason = "SIGTERM"


def check_base(config: UpsampleConfig, small) -> None:
    """--fakes-from names a model folder the stage can follow: its side is the stage's input, its attributes are
    in the cache (their training rows condition its faces), its SavedModel has the float signature."""
    from facegen import model_folder
    from training.evaluate import attribute_columns

    try:
        manifest = model_folder.read_manifest(config.fakes_from)
    except model_folder.ManifestError as error:
        raise UsageError(f"--fakes-from: {error}") from None
    if int(manifest["resolution"]) != config.small:
        raise UsageError(f"--fakes-from: {config.fakes_from} makes {manifest['resolution']} px faces; the stage "
                         f"takes {config.small} px")
    if not model_folder.has_pixels(manifest):
        raise UsageError(f"--fakes-from: {config.fakes_from} has no {model_folder.PIXELS_SIGNATURE} signature: "
                         "upgrade it with `python -m training export --upgrade`")
    attribute_columns(manifest["attributes"], small.attribute_names, what="--fakes-from: the model")


def read_config(run_dir: Path) -> tuple[UpsampleConfig, list]:
    """(the run's config as it trains now, the switches made on resume: [{"adversarial": w, "step": s}])."""
    recorded = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    changes = recorded.pop("changes", [])
    return UpsampleConfig(**recorded), changes


def run(args) -> int:
    """Check everything, then write: a refused command leaves the run folder as it was."""
    if args.steps is None and args.max_cpu_seconds is None:
        raise UsageError("say when to stop: --steps N or --max-cpu-seconds S")
    small, large, rows = paired_caches(args.small, args.large)
    config_path = args.out / CONFIG_FILE
    if args.resume:
        if not config_path.is_file():
            raise UsageError(f"--resume: {args.out} is not an upsampling run (no {CONFIG_FILE})")
        config, changes = read_config(args.out)
        switched = {}
        if args.adversarial is not None and args.adversarial != config.adversarial:
            switched["adversarial"] = args.adversarial
        if args.fakes_from is not None and str(args.fakes_from) != config.fakes_from:
            switched["fakes_from"] = str(args.fakes_from)
        if args.ema_decay is not None and args.ema_decay != config.ema_decay:
            switched["ema_decay"] = args.ema_decay
        if switched:
            config = dataclasses.replace(config, **switched)
            changes.append(switched)  # its step is filled in once the checkpoint is read
    else:
        changes = []
        if config_path.is_file():
            raise UsageError(f"--out {args.out} is an upsampling run already: pass --resume to continue it")
        config = UpsampleConfig(small=int(small.images.shape[1]), width=args.width, blocks=args.blocks,
                                batch_size=args.batch_size, adversarial=args.adversarial or 0.0,
                                fakes_from=None if args.fakes_from is None else str(args.fakes_from),
                                ema_decay=args.ema_decay or 0.0)
    if config.small != small.images.shape[1]:
        raise UsageError(f"--small holds {small.images.shape[1]} px photos; the run was started on {config.small} px")
    if config.batch_size > len(rows):
        raise UsageError(f"--batch-size {config.batch_size} is more than the {len(rows)} training photos")
    if config.fakes_from:
        check_base(config, small)
    trainer = UpsampleRun(args.out, config)
    if args.resume:
        trainer.load()
        if changes and "step" not in changes[-1]:
            changes[-1]["step"] = trainer.step
            config_path.write_text(json.dumps({**dataclasses.asdict(config), "changes": changes}, indent=2) + "\n")
    else:
        trainer.begin()
    step = trainer.train(small, large, rows, args.steps, args.max_cpu_seconds)
    from training.pictures import make_gif, plot_stage_losses

    plot_stage_losses(args.out / LOG_FILE, args.out / LOSS_CURVES)
    make_gif(run_folder.sample_frames(args.out), args.out / run_folder.TRAINING_GIF)
    print(f"stopped at step {step} ({trainer.stop_reason}), {trainer.cpu_seconds():.0f} CPU-s in all; "
          f"checkpoint in {args.out}")
    return 0


# -- export: a trained 64 px model with the stage behind it ----------------------------------------------------------
def load_upsampler(run_dir: Path):
    """The stage of an upsampling run folder, rebuilt and loaded from its checkpoint (its EMA weights where the run
    keeps them) -> (model, meta, config); meta["weights"] says which."""
    from training import checkpoint

    if not (Path(run_dir) / CONFIG_FILE).is_file():
        raise UsageError(f"--upsampler: {run_dir} is not an upsampling run (no {CONFIG_FILE})")
    config, _ = read_config(run_dir)
    groups, meta = checkpoint.load_state(Path(run_dir))
    model = build_upsampler(config)
    meta["weights"] = "ema" if "u_ema" in groups else "raw"
    checkpoint.assign(model.weights, groups["u_ema" if "u_ema" in groups else "u"], "upsampler")
    return model, meta, config


def upsampled_networks(generator, encoder, upsampler):
    """(G', E'): G' = the stage after ``generator``; E' = ``encoder`` after a 2x2 average (the 128 px framed photo
    brought to the 64 px the encoder was trained on), so the exported encode takes the model's own resolution."""
    import keras
    from keras import ops

    class UpsampledGenerator(keras.Model):
        def __init__(self):
            super().__init__(name="upsampled_generator")
            self.generator, self.upsampler = generator, upsampler

        def call(self, inputs, training=False):
            return self.upsampler(self.generator(inputs, training=training), training=training)

    class DownsampledEncoder(keras.Model):
        def __init__(self):
            super().__init__(name="downsampled_encoder")
            self.encoder = encoder

        def call(self, images, training=False):
            return self.encoder(ops.average_pool(images, 2, 2), training=training)

    return UpsampledGenerator(), (None if encoder is None else DownsampledEncoder())


def export_upsampled(run_dir: Path, base_dir: Path, out_dir: Path, name: str | None = None) -> Path:
    """Export ``base_dir``'s generator (and encoder) with the run's stage behind it as a model of twice the side.
    The base's attribute table, data set, framing template and edit gains carry over (the stage changes none of
    what they describe); the manifest's training object says which base and which stage, with the stage's steps."""
    from facegen import model_folder
    from training.export import framing_from_model, rebuild_networks, write_saved_model

    base = model_folder.read_manifest(base_dir)
    generator, encoder, config = rebuild_networks(base_dir)
    upsampler, meta, up_config = load_upsampler(run_dir)
    if up_config.small != config.resolution:
        raise UsageError(f"--upsampler takes {up_config.small} px faces but --base makes {config.resolution} px ones")
    big, big_encoder = upsampled_networks(generator, encoder, upsampler)
    # Not validated as a training config (none trains it): it tells export the side and what the manifest calls it.
    big_config = dataclasses.replace(config, resolution=2 * config.resolution,
                                     architecture=f"{config.architecture} + upsampling stage")
    training = dict(base.get("training") or {})
    training["upsampler"] = {"run": Path(run_dir).name, "steps": int(meta["step"]), "weights": meta["weights"],
                             "cpu_seconds": meta.get("cpu_seconds"), "config": dataclasses.asdict(up_config),
                             "base": base["name"], "loss": "mean absolute error against the 128 px photos"}
    dataset = dict(base.get("dataset") or {})
    dataset["resolution"] = big_config.resolution
    fields = {"name": name, "attribute_frequencies": base.get("attribute_frequencies"),
              "attribute_table": base.get("attribute_table"), "dataset": dataset, "training": training}
    framing = framing_from_model(base_dir) if big_encoder is not None else None
    path = write_saved_model(big, big_config, out_dir, fields, big_encoder, framing)
    base_encoder = base.get("encoder") or {}
    gains = {key: base_encoder[key] for key in model_folder.EDIT_GAIN_KEYS.values() if base_encoder.get(key)}
    if gains and big_encoder is not None:  # the base's edits, so its gains (each kind's)
        manifest = model_folder.read_manifest(path)
        manifest["encoder"].update(gains)
        model_folder.write_manifest(path, manifest)
    return path
