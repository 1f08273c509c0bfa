"""``export``: a training run's generator -> TensorFlow SavedModel + manifest.json (see docs/ARCHITECTURE.md).

The SavedModel holds the whole path from (noise, attributes) to uint8 RGB pixels, so serving needs TensorFlow,
NumPy and the manifest, and no Keras or training code. A run trained with the encoder (config.encoder) also gets
``encode(images uint8 [N, R, R, 3]) -> {"noise", "attrs"}`` (the pixel rule's inverse inside the graph, attribute
probabilities), and the manifest's "encoder" object says so, with the framing template the encoder expects: the
mean landmark positions of the run's training images (facegen.framing.mean_landmarks), measured here once.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from facegen import model_folder
from training import run_folder
from training.arguments import at_least
from training.usage_error import UsageError
from training.timestamps import utc_now

DEFAULT_FRAMING_IMAGES = 500
# MTCNN looks for faces of 20 px and up: training images smaller than this are enlarged (bicubic) before detection.
# The template is in fractions of the side, so the enlargement does not move it.
FRAMING_DETECT_SIZE = 128
# The framing template of the untrained models export_random_model writes (demos and serving tests): the mean
# landmarks mtcnn 1.0.0 found on 499 of 500 training images of CelebA-HQ at 64 px (enlarged to 128 for detection).
# --upgrade checks the re-saved model against the old one on this many seeds' faces (and their encodings).
UPGRADE_SEEDS = 64
UNTRAINED_FRAMING = [[0.3774, 0.4755], [0.6243, 0.4753], [0.5007, 0.6301], [0.3911, 0.7346], [0.6104, 0.7341]]


def add_arguments(parser):
    parser.add_argument("--run", type=Path, help="training run folder (written by `train --out`)")
    parser.add_argument("--out", type=Path, help="model folder to write (replaced if it exists)")
    parser.add_argument("--upgrade", type=Path, metavar="MODEL_DIR",
                        help="instead of exporting a run: re-save a model folder's SavedModel with today's "
                             "signatures (generate_pixels), rebuilt from its own variables; its uint8 faces and "
                             f"encodings are checked identical on {UPGRADE_SEEDS} seeds before anything is replaced")
    parser.add_argument("--name", help="model name for the manifest (default: the --out folder's name)")
    parser.add_argument("--raw", action="store_true", help="export the raw generator instead of its EMA copy")
    parser.add_argument("--default", action="store_true",
                        help="also record this model as the default in the models folder's DEFAULT file")
    stage = parser.add_argument_group("a 64 px model with an upsampling stage behind it (training/upsample.py)")
    stage.add_argument("--upsampler", type=Path, metavar="RUN_DIR",
                       help="instead of --run: an `upsample` run folder, exported behind --base's generator")
    stage.add_argument("--base", type=Path, metavar="MODEL_DIR", help="the model folder whose generator the stage "
                                                                       "enlarges (with --upsampler)")
    framing = parser.add_argument_group("encoder framing (runs trained with encoder: true)")
    framing.add_argument("--data", type=Path, metavar="CACHE.npz",
                         help="the run's data cache, to measure the framing template on its training images "
                              "(default: the cache the run recorded in run.json)")
    framing.add_argument("--framing-images", type=at_least(1), default=DEFAULT_FRAMING_IMAGES, metavar="N",
                         help=f"training images the template is measured on (default {DEFAULT_FRAMING_IMAGES})")
    framing.add_argument("--framing-from", type=Path, metavar="MODEL_DIR",
                         help="copy the framing template from another model's manifest instead of measuring it "
                              "(for when the data cache is not at hand; the data must be framed alike)")


def run(args) -> int:
    if args.upgrade is not None:
        if args.run is not None or args.out is not None:
            raise UsageError("--upgrade rewrites a model folder in place: it takes no --run or --out")
        checked = upgrade_model(args.upgrade)
        print(f"upgraded {args.upgrade}: {model_folder.PIXELS_SIGNATURE} added; uint8 faces identical on "
              f"{checked['seeds']} seeds{', encodings identical' if checked['encoder'] else ''}")
        return 0
    if args.upsampler is not None:
        from training.upsample import export_upsampled

        if args.run is not None or args.base is None or args.out is None:
            raise UsageError("--upsampler RUN_DIR is exported with --base MODEL_DIR and --out MODEL_DIR (no --run)")
        path = export_upsampled(args.upsampler, args.base, args.out, name=args.name)
    elif args.run is None or args.out is None:
        raise UsageError("export needs --run RUN_DIR and --out MODEL_DIR (or --upgrade MODEL_DIR)")
    else:
        path = export_run(args.run, args.out, name=args.name, use_ema=not args.raw, data=args.data,
                          framing_images=args.framing_images, framing_from=args.framing_from)
    if args.default:
        model_folder.write_default(path.parent, path.name)
    manifest = model_folder.read_manifest(path)
    print(f"exported {manifest['name']}: {manifest['resolution']}x{manifest['resolution']}, "
          f"{manifest['parameters']:,} parameters, {len(manifest['attributes'])} attributes"
          f"{', with the encoder (encode)' if manifest.get('encoder') else ''} -> {path}")
    return 0


def detector_name() -> str:
    from importlib.metadata import version

    return f"{model_folder.FRAMING_DETECTOR} {version(model_folder.FRAMING_DETECTOR)}"


def measure_framing(images, count: int = DEFAULT_FRAMING_IMAGES, seed: int = 0, progress: bool = True) -> dict:
    """The framing template (facegen.framing.mean_landmarks) on a seeded sample of ``count`` of ``images``
    (uint8 [N, S, S, 3], a run's training images), as the manifest's encoder.framing holds it."""
    import numpy as np
    from PIL import Image

    from facegen.framing import NoFaceFound, mean_landmarks

    images = np.asarray(images) if not hasattr(images, "shape") else images
    pick = np.sort(np.random.RandomState(seed).choice(len(images), min(count, len(images)), replace=False))
    size = images.shape[1]

    def sample():
        for done, i in enumerate(pick):
            rgb = np.asarray(images[i])
            if size < FRAMING_DETECT_SIZE:
                rgb = np.asarray(Image.fromarray(rgb).resize((FRAMING_DETECT_SIZE,) * 2, Image.Resampling.BICUBIC))
            if progress and (done + 1) % 100 == 0:
                print(f"  framing: {done + 1}/{len(pick)} images", flush=True)
            yield rgb

    if progress:
        print(f"measuring the framing template on {len(pick)} training images ({detector_name()})", flush=True)
    try:
        measured = mean_landmarks(sample())
    except NoFaceFound:
        raise UsageError(f"no face found in any of the {len(pick)} training images sampled for the encoder's framing "
                         "template: is this face data? Pass --framing-from MODEL_DIR to copy a template") from None
    return {"landmarks": measured.template.tolist(), "detector": detector_name(), "images": int(measured.used),
            "skipped": int(measured.skipped), "spread": [[round(float(v), 5) for v in row] for row in measured.spread]}


def framing_from_model(model_dir) -> dict:
    """The framing of another model's manifest (--framing-from)."""
    model_dir = Path(model_dir)
    try:
        manifest = model_folder.read_manifest(model_dir)
    except model_folder.ManifestError as error:
        raise UsageError(f"--framing-from: {error}") from None
    encoder = manifest.get("encoder")
    if not encoder:
        raise UsageError(f"--framing-from: {model_dir} has no encoder, so its manifest holds no framing template")
    framing = encoder["framing"]
    return {"landmarks": framing["landmarks"], "detector": framing["detector"],
            "source": f"copied from the model {manifest['name']} ({framing.get('source', 'measured at its export')})"}


def run_framing(run_info: dict, data=None, count: int = DEFAULT_FRAMING_IMAGES, framing_from=None) -> dict:
    """The framing for a run with an encoder: copied (--framing-from), else measured on the run's training images
    from --data or the cache the run recorded; a clear UsageError when neither is at hand."""
    if framing_from is not None:
        return framing_from_model(framing_from)
    from training.data import load_cache, training_rows

    path = Path(data) if data is not None else run_folder.recorded_cache(run_info)
    if path is None or not path.is_file():
        where = (f"--data {path} does not exist" if data is not None else
                 f"the run's data cache {path} is not available" if path is not None else
                 "the run recorded no data cache (trained before export measured framing)")
        raise UsageError(f"the run has an encoder, whose manifest needs the framing template measured on the run's "
                         f"training images, but {where}. Pass --data CACHE.npz (the data the run trained on) or "
                         "--framing-from MODEL_DIR (a model trained on data framed alike)")
    cache = load_cache(path)
    framing = measure_framing(cache.images[training_rows(cache.partition)], count)
    framing["source"] = f"{path.name}: {framing['images']} of {framing['images'] + framing['skipped']} sampled training images"
    return framing


def _use_tensorflow_backend():
    # A SavedModel is TensorFlow's format: the generator is rebuilt on the TensorFlow backend whatever trained it.
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise UsageError(f"export needs KERAS_BACKEND=tensorflow (it is {backend!r}): a SavedModel is "
                         "TensorFlow's format. Train on any backend, export on TensorFlow.")
    os.environ["KERAS_BACKEND"] = "tensorflow"


def write_saved_model(generator, config, out_dir: Path, manifest_fields: dict, encoder=None, framing=None) -> Path:
    """Write ``generator`` (a built Keras model, TensorFlow backend) as a SavedModel plus its manifest; with
    ``encoder`` (a built Keras encoder) and its ``framing`` (see model_folder.encoder_field), the encode function
    and signature too. Written beside ``out_dir``, checked as serving will use it, then swapped into place."""
    import tensorflow as tf

    if encoder is not None and framing is None:
        raise ValueError("an encoder is exported with its framing template")
    module, signatures = serving_module(generator, config, encoder)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then swap, so a failed export never leaves a half model where a good one was.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    # mkdtemp makes the folder private (0700); a model is read by other users (the image's non-root server).
    os.chmod(staging, 0o755)
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        model_folder.write_manifest(staging, export_manifest(generator, config, out_dir, manifest_fields, encoder,
                                                             framing))
        check_saved_model(staging, config, with_encoder=encoder is not None)
        replace_model_folder(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def serving_module(generator, config, encoder=None):
    """(the tf.Module export saves, its signatures): generate(noise, attrs) -> uint8 pixels by the contract's pixel
    rule inside the graph, generate_pixels(noise, attrs) -> the same faces as float32 in [-1, 1] (the contract's
    PIXELS_SIGNATURE), and with an encoder encode(uint8 images) -> noise and attribute probabilities."""
    import tensorflow as tf

    latent, a, r = config.latent_size, config.num_attributes, config.resolution

    class FaceGenerator(tf.Module):
        def __init__(self, model):
            super().__init__(name="facegen")
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="noise"),
                                      tf.TensorSpec([None, a], tf.float32, name="attrs")])
        def generate_pixels(self, noise, attrs):
            # The generator's float32 output in [-1, 1], before the pixel rule: differentiable (facegen/inversion.py).
            return tf.cast(self.model([noise, attrs], training=False), tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="noise"),
                                      tf.TensorSpec([None, a], tf.float32, name="attrs")])
        def generate(self, noise, attrs):
            pixels = self.model([noise, attrs], training=False)
            # The contract's pixel rule inside the graph, so every client gets identical pixels.
            return tf.cast(model_folder.pixels_to_uint8(pixels, round=tf.round, clip=tf.clip_by_value), tf.uint8)

        @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="noise"),
                                      tf.TensorSpec([None, a], tf.float32, name="attrs")])
        def serve(self, noise, attrs):
            return {"images": self.generate(noise, attrs)}

        @tf.function(input_signature=[tf.TensorSpec([None, latent], tf.float32, name="noise"),
                                      tf.TensorSpec([None, a], tf.float32, name="attrs")])
        def serve_pixels(self, noise, attrs):
            return {"pixels": self.generate_pixels(noise, attrs)}

    class FaceGeneratorEncoder(FaceGenerator):
        def __init__(self, model, encoder_model):
            super().__init__(model)
            self.encoder = encoder_model

        @tf.function(input_signature=[tf.TensorSpec([None, r, r, 3], tf.uint8, name="images")])
        def encode(self, images):
            # The contract's inverse pixel rule inside the graph: the encoder sees pixels as training showed them.
            pixels = model_folder.uint8_to_pixels(tf.cast(images, tf.float32))
            z, logits = self.encoder(pixels, training=False)
            return {"noise": tf.cast(z, tf.float32), "attrs": tf.sigmoid(tf.cast(logits, tf.float32))}

    module = FaceGenerator(generator) if encoder is None else FaceGeneratorEncoder(generator, encoder)
    signatures = {model_folder.GENERATE_SIGNATURE: module.serve, model_folder.PIXELS_SIGNATURE: module.serve_pixels}
    if encoder is not None:
        signatures[model_folder.ENCODE_SIGNATURE] = module.encode
    return module, signatures


def export_manifest(generator, config, out_dir: Path, manifest_fields: dict, encoder=None, framing=None) -> dict:
    """The manifest (model_folder.build_manifest) of the model written to ``out_dir``."""
    from training.networks import count_parameters

    r, latent, a = config.resolution, config.latent_size, config.num_attributes
    return model_folder.build_manifest(
        name=manifest_fields.get("name") or Path(out_dir).name, resolution=r, latent_size=latent,
        attributes=config.attributes, architecture=config.architecture, parameters=count_parameters(generator),
        attribute_frequencies=manifest_fields.get("attribute_frequencies"),
        attribute_table=manifest_fields.get("attribute_table"),
        dataset=manifest_fields.get("dataset"), training=manifest_fields.get("training"),
        metrics=manifest_fields.get("metrics"), created=utc_now(),
        encoder=None if encoder is None else model_folder.encoder_field(r, latent, a, framing))


def check_saved_model(folder: Path, config, with_encoder: bool) -> None:
    """Load the written SavedModel the way serving will and run one face (and one encode) through it."""
    import numpy as np
    import tensorflow as tf

    latent, a, r = config.latent_size, config.num_attributes, config.resolution
    loaded = tf.saved_model.load(str(folder))
    probe = loaded.generate(np.zeros((1, latent), np.float32), np.zeros((1, a), np.float32)).numpy()
    if probe.shape != (1, r, r, 3) or probe.dtype != np.uint8:
        raise RuntimeError(f"exported model returned {probe.shape} {probe.dtype}")
    pixels = model_folder.pixels_function(loaded)(tf.zeros((1, latent)), tf.zeros((1, a))).numpy()
    if pixels.shape != (1, r, r, 3) or pixels.dtype != np.float32:
        raise RuntimeError(f"exported {model_folder.PIXELS_SIGNATURE} returned {pixels.shape} {pixels.dtype}")
    if not np.array_equal(model_folder.to_uint8(pixels), probe):
        raise RuntimeError(f"exported {model_folder.PIXELS_SIGNATURE} disagrees with the uint8 faces under the pixel "
                           "rule")
    if set(loaded.signatures) < {model_folder.GENERATE_SIGNATURE, model_folder.PIXELS_SIGNATURE}:
        raise RuntimeError(f"exported model lacks a signature: it has {sorted(loaded.signatures)}")
    if with_encoder:
        codes = loaded.encode(probe)
        if codes["noise"].shape != (1, latent) or codes["attrs"].shape != (1, a):
            raise RuntimeError(f"exported encoder returned {codes['noise'].shape}, {codes['attrs'].shape}")


def replace_model_folder(staging: Path, out_dir: Path) -> None:
    """Put the checked model in ``staging`` where ``out_dir`` was, keeping a hand-kept card across re-exports."""
    for extra in (model_folder.CARD,):
        if (out_dir / extra).is_file():
            shutil.copy2(out_dir / extra, staging / extra)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)


def export_run(run_dir: Path, out_dir: Path, name: str | None = None, use_ema: bool = True, data=None,
               framing_images: int = DEFAULT_FRAMING_IMAGES, framing_from=None) -> Path:
    """Rebuild the run's generator (and encoder) on the TensorFlow backend, load its checkpoint and export it."""
    _use_tensorflow_backend()
    generator, config, run_info, meta, group = run_folder.load_run_generator(run_dir, use_ema)
    encoder = run_folder.load_run_encoder(run_dir, config)
    framing = None
    if encoder is not None:
        framing = run_framing(run_info, data, framing_images, framing_from)
    elif data is not None or framing_from is not None:
        print("note: the run has no encoder; --data / --framing-from are not used", flush=True)
    training = dict(run_info.get("training", {}))
    training.update(steps=meta["step"], epochs=meta.get("epoch"), images_seen=meta["step"] * config.batch_size,
                    train_seconds=round(meta.get("seconds", 0.0), 1), weights="ema" if group == "g_ema" else "raw",
                    batch_size=config.batch_size, config=config.to_dict())
    fields = {"name": name, "attribute_frequencies": run_info.get("attribute_frequencies", [0.5] * config.num_attributes),
              "attribute_table": run_info.get("attribute_table"),
              "dataset": dataset_terms(run_info.get("dataset", {})), "training": training}
    return write_saved_model(generator, config, out_dir, fields, encoder, framing)


def dataset_terms(dataset: dict) -> dict:
    """The run's data set with its licence terms and split, which runs started before they were recorded lack:
    the licence follows from what the data is, the split from the cache's meta when the cache is still there."""
    from training.data import dataset_licence, load_cache

    dataset = dict(dataset)
    dataset.setdefault("licence", dataset_licence(bool(dataset.get("synthetic"))))
    if dataset.get("split") is None and dataset.get("cache") and Path(dataset["cache"]).is_file():
        dataset["split"] = load_cache(dataset["cache"]).meta.get("split")
    return dataset


def export_random_model(out_dir, name="tiny", resolution=32, latent_size=16,
                        attributes=("Male", "Eyeglasses", "Smiling"), seed=0, attribute_table=None, encoder=False,
                        framing=None) -> Path:
    """An untrained small generator exported with the real export path: for tests and demos of serving.

    The manifest says plainly that it is untrained. ``attribute_table`` (as ``model_folder.attribute_table`` makes
    it) stands in for a training set's attribute rows: written to the manifest, with the frequencies it implies;
    without it the manifest has no table, like exports made before the table existed. ``encoder``: also an
    untrained encoder, so the model has ``encode`` and an "encoder" manifest object; ``framing`` is its template
    ([5, 2] fractions of the side), UNTRAINED_FRAMING (measured on CelebA-HQ) by default.
    """
    _use_tensorflow_backend()
    import numpy as np

    from training.config import TrainConfig
    from training.networks import build_encoder, build_generator

    config = TrainConfig(resolution=resolution, latent_size=latent_size, attributes=list(attributes),
                         g_width=8, g_max_width=32, d_width=8, d_max_width=32, encoder=bool(encoder)).validate()
    generator = build_generator(config)
    encoder_model = build_encoder(config) if encoder else None
    # Keras' random initialisers are not reproducible across processes here, so every kernel is redrawn from a
    # NumPy stream (scaled by its fan-in); vectors (biases, scales) are constants already. Same seed, same model.
    # The encoder's kernels are drawn after the generator's, so a model's generator does not depend on it.
    rng = np.random.RandomState(seed)
    for variable in generator.weights + (encoder_model.weights if encoder_model is not None else []):
        shape = tuple(variable.shape)
        if len(shape) >= 2:
            scale = 1.0 / np.sqrt(np.prod(shape[:-1]))
            variable.assign((scale * rng.standard_normal(shape)).astype(variable.dtype))
    frequencies = [0.5] * len(attributes)
    if attribute_table:
        rows = np.array([[int(c) for c in row] for row in attribute_table["rows"]], np.float64).reshape(
            -1, len(attributes))
        counts = np.asarray(attribute_table["counts"], np.float64)
        frequencies = (counts @ rows / counts.sum()).tolist()
    fields = {"name": name, "attribute_frequencies": frequencies, "attribute_table": attribute_table,
              "dataset": {"name": "none", "synthetic": True, "images": 0,
                          "note": "untrained random weights, made by training.export.export_random_model"},
              "training": {"steps": 0, "note": "untrained", "config": config.to_dict()}}
    framing_field = None
    if encoder_model is not None:
        framing_field = {"landmarks": UNTRAINED_FRAMING if framing is None else np.asarray(framing).tolist(),
                         "detector": detector_name(),
                         "source": "fixed template for untrained test models (export_random_model)"}
    return write_saved_model(generator, config, Path(out_dir), fields, encoder_model, framing_field)


# -- upgrading a model folder made before a signature existed -------------------------------------------------------
def _copy_all(model, weights: dict) -> None:
    """Every layer of ``model`` that has a kernel gets its (kernel, bias) from ``weights`` (grow.saved_layers), by
    name and with the same shapes, and every entry of ``weights`` is used: UsageError naming the first mismatch."""
    from training.grow import layer_kernel

    used = set()
    for layer in model.layers:
        kernel = layer_kernel(layer)
        if kernel is None:
            continue
        if layer.name not in weights:
            raise UsageError(f"--upgrade: layer {layer.name} of the manifest's config is not in the SavedModel")
        source_kernel, source_bias = weights[layer.name]
        if tuple(kernel.shape) != source_kernel.shape or tuple(layer.bias.shape) != source_bias.shape:
            raise UsageError(f"--upgrade: layer {layer.name} is {tuple(kernel.shape)} in the manifest's config "
                             f"but {source_kernel.shape} in the SavedModel")
        kernel.assign(source_kernel)
        layer.bias.assign(source_bias)
        used.add(layer.name)
    if set(weights) - used:
        raise UsageError(f"--upgrade: the SavedModel has layers the manifest's config does not build: "
                         f"{sorted(set(weights) - used)}")


def rebuild_networks(model_dir):
    """(generator, encoder or None, config): a model folder's networks rebuilt as Keras models from the config in
    its manifest (training.config) and its SavedModel's variables, read as grow.warm_start reads them."""
    import keras
    import tensorflow as tf

    from training.config import load_config
    from training.grow import saved_layers
    from training.networks import build_encoder, build_generator

    manifest = model_folder.read_manifest(model_dir)
    if (manifest.get("training") or {}).get("upsampler"):
        raise UsageError(f"--upgrade: {model_dir} is a model with an upsampling stage behind it: export it again "
                         "with --upsampler RUN_DIR --base MODEL_DIR")
    values = dict((manifest.get("training") or {}).get("config") or {})
    if not values:
        raise UsageError(f"--upgrade: {model_dir}'s manifest records no training config to rebuild the networks from")
    values["grow_from"] = None  # training only: the weights come from this folder
    config = load_config(None, **values).validate()
    if config.architecture != "facegen":
        raise UsageError(f"--upgrade: only the facegen architecture is rebuilt, not {config.architecture!r}")
    keras.config.set_dtype_policy("float32")  # as export on the CPU: the exported graph computes in float32
    saved = tf.saved_model.load(str(model_dir))
    generator = build_generator(config)
    _copy_all(generator, saved_layers(saved, "model", [block.name for block in generator.blocks]))
    if generator.fades_in:
        generator.fade.assign(np.asarray(saved.model.fade))
    encoder = None
    if manifest.get("encoder") and hasattr(saved, "encoder"):
        encoder = build_encoder(config)
        _copy_all(encoder, saved_layers(saved, "encoder", [down.name for down in encoder.downs]))
    return generator, encoder, config


def _same_outputs(old_dir, new_dir, manifest, seeds: int) -> dict:
    """Check the re-saved model gives the old one's uint8 faces (and encodings) byte for byte on ``seeds`` seeds,
    and that its PIXELS_SIGNATURE agrees with them under the pixel rule; RuntimeError naming the first difference."""
    import tensorflow as tf

    from facegen.attributes import seed_face

    latent, frequencies = int(manifest["latent_size"]), manifest["attribute_frequencies"]
    drawn = [seed_face(seed, latent, 1.0, frequencies, None) for seed in range(seeds)]
    noise = np.stack([d[0] for d in drawn]).astype(np.float32)
    attrs = np.stack([d[1] for d in drawn]).astype(np.float32)
    old, new = tf.saved_model.load(str(old_dir)), tf.saved_model.load(str(new_dir))
    before = model_folder.generate_function(old)(noise, attrs)
    after = model_folder.generate_function(new)(noise, attrs)
    if not np.array_equal(before, after):
        differs = np.flatnonzero((before != after).reshape(seeds, -1).any(axis=1))
        raise RuntimeError(f"the re-saved generator differs from the old one on seeds {differs[:8].tolist()} "
                           f"(largest difference {np.abs(before.astype(int) - after).max()} levels)")
    pixels = model_folder.pixels_function(new)(tf.constant(noise), tf.constant(attrs)).numpy()
    if not np.array_equal(model_folder.to_uint8(pixels), after):
        raise RuntimeError(f"the re-saved {model_folder.PIXELS_SIGNATURE} disagrees with its uint8 faces")
    encoder = bool(manifest.get("encoder"))
    if encoder:
        old_codes = model_folder.load_encode(old_dir, old)(before)
        new_codes = model_folder.load_encode(new_dir, new)(before)
        if not all(np.array_equal(a, b) for a, b in zip(old_codes, new_codes)):
            raise RuntimeError("the re-saved encoder's outputs differ from the old one's")
    return {"seeds": seeds, "encoder": encoder}


SAVED_MODEL_FILES = (model_folder.SAVED_MODEL, "variables", "fingerprint.pb", "assets")


def upgrade_model(model_dir, seeds: int = UPGRADE_SEEDS) -> dict:
    """Re-save ``model_dir``'s SavedModel with today's serving_module (so with PIXELS_SIGNATURE), rebuilt from its
    own variables; only once the new one gives identical uint8 faces (and encodings) on ``seeds`` seeds are the
    SavedModel's files replaced and the manifest's "signature" rewritten. Everything else in the folder (the
    manifest's other fields, the card, its pictures) is left as it is. -> {"seeds", "encoder"} as checked."""
    import tensorflow as tf

    _use_tensorflow_backend()
    model_dir = Path(model_dir)
    manifest = model_folder.read_manifest(model_dir)
    generator, encoder, config = rebuild_networks(model_dir)
    module, signatures = serving_module(generator, config, encoder)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.upgrade.", dir=model_dir.parent))
    os.chmod(staging, 0o755)
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        model_folder.write_manifest(staging, manifest)
        check_saved_model(staging, config, with_encoder=encoder is not None)
        checked = _same_outputs(model_dir, staging, manifest, seeds)
        for name in SAVED_MODEL_FILES:
            old, new = model_dir / name, staging / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
            if new.exists():
                os.replace(new, old)
        manifest["signature"] = model_folder.generate_signature_field(config.resolution, config.latent_size,
                                                                      config.num_attributes)
        model_folder.write_manifest(model_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checked
