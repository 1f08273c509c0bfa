"""Quality metrics for a generator, as a registry of named functions (in the manner of StyleGAN3's metric_main).

Each metric takes a ``Context`` (how to generate, the held-out real images, the attribute classifier, sample
counts, seed) and returns a JSON-ready dict. ``compute_metrics(names, context)`` runs several; the expensive parts
they share (the generated sample with real attribute rows, the real images' features) are computed once and kept
on the context.

The numerical cores (``frechet_distance``, ``feature_statistics``, ``diversity_statistics``) take plain numpy
arrays so they can be tested on synthetic inputs. Backend-neutral: numpy + keras only (no TensorFlow here).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from facegen.attributes import ON_THRESHOLD, is_on
from facegen.edit_methods import encoder_inputs
from training.classifier import reads_on

METRICS: dict = {}  # name -> function(context) -> dict

# diversity: a sample is "collapsed" when its spread is under half the real one, or when this many times more of
# its pairs are near-duplicates (closer than the closest 1% of real pairs) than among real images.
COLLAPSE_RATIO = 0.5
NEAR_DUPLICATE_PERCENTILE = 1.0
COLLAPSE_NEAR_DUPLICATES = 0.1
PAIR_SAMPLES = 1000  # images whose pairwise distances are measured (1000 -> ~500k pairs)
PIXEL_PAIR_SAMPLES = 500


def register(fn: Callable | None = None, *, name: str | None = None):
    """Decorator adding a metric to METRICS under its function name (or ``name``)."""

    def add(function):
        METRICS[name or function.__name__] = function
        return function

    return add(fn) if fn is not None else add


# -- numerical cores -------------------------------------------------------------------------------------------
def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of [N, D] features, in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature rows, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def symmetric_sqrt(matrix) -> np.ndarray:
    """The PSD square root of a symmetric matrix (eigenvalues below zero, round-off, clipped to zero)."""
    matrix = np.asarray(matrix, np.float64)
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    tr((S1 S2)^(1/2)) is computed as tr((S1^(1/2) S2 S1^(1/2))^(1/2)), the square root of a symmetric PSD
    matrix, so eigh suffices: no complex round-off to discard, no scipy needed.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shapes do not match: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    root1 = symmetric_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    trace_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None))))
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance_of(features_a, features_b) -> float:
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def pairwise_distances(x) -> np.ndarray:
    """Euclidean distances of all pairs i < j of the rows of x, as a flat array."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    squared = np.sum(x * x, axis=1)
    d2 = squared[:, None] + squared[None, :] - 2.0 * (x @ x.T)
    upper = np.triu_indices(len(x), k=1)
    return np.sqrt(np.clip(d2[upper], 0.0, None))


def _subsample(x, n, seed):
    if len(x) <= n:
        return x
    return x[np.sort(np.random.RandomState(seed).choice(len(x), n, replace=False))]


def diversity_statistics(generated_features, real_features, generated_pixels=None, real_pixels=None,
                         seed: int = 0) -> dict:
    """Mean pairwise distances of generated vs real samples (features, optionally pixels) and a collapse flag."""
    gen = pairwise_distances(_subsample(np.asarray(generated_features), PAIR_SAMPLES, seed))
    real = pairwise_distances(_subsample(np.asarray(real_features), PAIR_SAMPLES, seed + 1))
    if len(gen) == 0 or len(real) == 0:
        raise ValueError("diversity needs at least 2 generated and 2 real samples")
    gen_mean, real_mean = float(gen.mean()), float(real.mean())
    threshold = float(np.percentile(real, NEAR_DUPLICATE_PERCENTILE))
    near = float(np.mean(gen <= threshold)) if threshold > 0 else float(np.mean(gen == 0))
    ratio = gen_mean / real_mean if real_mean > 0 else None
    result = {"feature_distance": round(gen_mean, 4), "real_feature_distance": round(real_mean, 4),
              "feature_ratio": None if ratio is None else round(ratio, 4),
              "near_duplicate_threshold": round(threshold, 4), "near_duplicate_fraction": round(near, 4),
              "real_near_duplicate_fraction": NEAR_DUPLICATE_PERCENTILE / 100.0}
    if generated_pixels is not None and real_pixels is not None:
        scale = lambda images: _subsample(np.asarray(images), PIXEL_PAIR_SAMPLES, seed).astype(np.float32) / 255.0
        gen_px, real_px = pairwise_distances(scale(generated_pixels)).mean(), pairwise_distances(
            scale(real_pixels)).mean()
        result.update(pixel_distance=round(float(gen_px), 4), real_pixel_distance=round(float(real_px), 4),
                      pixel_ratio=round(float(gen_px / real_px), 4) if real_px > 0 else None)
    result["collapsed"] = bool((ratio is not None and ratio < COLLAPSE_RATIO) or near > COLLAPSE_NEAR_DUPLICATES)
    return result


# -- the context -------------------------------------------------------------------------------------------------
class Progress:
    """A one-line counter on a terminal, a few lines in a log; silent when disabled."""

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total, self.enabled = label, int(total), enabled
        self.tty = sys.stdout.isatty()
        self.start, self.last = time.monotonic(), 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = done >= self.total
        if self.tty and (finished or now - self.last > 0.2):
            print(f"\r  {self.label}: {done}/{self.total} ({now - self.start:.0f} s)", end="\n" if finished else "",
                  flush=True)
            self.last = now
        elif not self.tty and (finished or now - self.last > 15):
            print(f"  {self.label}: {done}/{self.total} ({now - self.start:.0f} s)", flush=True)
            self.last = now


@dataclasses.dataclass
class Context:
    """What a metric may use. ``generate(noise float32 [n, latent], attrs float32 [n, A]) -> uint8 [n, H, W, 3]``."""

    generate: Callable
    latent_size: int
    attributes: list  # the model's attribute names, in its order
    frequencies: np.ndarray  # the model's training marginals, [A]
    real_images: np.ndarray  # held-out real images, uint8
    real_attributes: np.ndarray  # their attributes in the model's order, 0/1 [N, A]
    classifier: object  # training.classifier.AttributeClassifier
    samples: int = 2000
    attribute_samples: int = 500  # per attribute: half with it on, half off
    seed: int = 0
    batch_size: int = 128
    inception_weights: Path | None = None
    progress: bool = True
    # The encoder, for models that have one: encode(uint8 [n, R, R, 3]) -> (noise float32 [n, latent], attribute
    # probabilities float32 [n, A]); the held-out photos it is measured on (the cache's test partition) and their
    # attributes in the model's order; the attributes the edit figures flip (None: all of the model's).
    encode: Callable | None = None
    encoder_images: np.ndarray | None = None
    encoder_attributes: np.ndarray | None = None
    edit_attributes: list | None = None
    # The identity metric (training/identity.py): the model folder and its held-out photos' files (square, aligned
    # as the data set's photos are); without both, identity is skipped.
    model_dir: Path | None = None
    identity_photos: list | None = None
    shared: dict = dataclasses.field(default_factory=dict)

    def generate_all(self, noise, attrs, label: str = "generating") -> np.ndarray:
        noise, attrs = np.asarray(noise, np.float32), np.asarray(attrs, np.float32)
        progress = Progress(label, len(noise), self.progress)
        chunks = []
        for start in range(0, len(noise), self.batch_size):
            chunk = np.asarray(self.generate(noise[start:start + self.batch_size], attrs[start:start + self.batch_size]))
            if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
                raise RuntimeError(f"the generator returned {chunk.shape} {chunk.dtype}, expected uint8 [n, H, W, 3]")
            chunks.append(chunk)
            progress.update(start + len(chunk))
        return np.concatenate(chunks) if chunks else np.zeros((0, 1, 1, 3), np.uint8)

    def conditioned_sample(self):
        """N generated images whose attribute rows are real held-out rows, with their classifier features."""
        if "conditioned" not in self.shared:
            rng = np.random.RandomState(self.seed)
            noise = rng.standard_normal((self.samples, self.latent_size)).astype(np.float32)
            if len(self.attributes):
                rows = self.real_attributes[rng.randint(0, len(self.real_attributes), self.samples)]
            else:
                rows = np.zeros((self.samples, 0))
            images = self.generate_all(noise, rows, "generating with real attribute rows")
            features, probabilities = self.classifier.both(images)
            self.shared["conditioned"] = {"images": images, "features": features, "probabilities": probabilities,
                                          "attributes": rows}
        return self.shared["conditioned"]

    def encoded_sample(self):
        """The held-out photos encoded and rebuilt from (their code, the attributes E found, read as /api/edit
        reads them: facegen.edit_methods.encoder_inputs), with the classifier's features and probabilities of the
        photos and the rebuilds."""
        if "encoded" not in self.shared:
            images = np.asarray(self.encoder_images)
            noise, found = [], []
            for start in range(0, len(images), self.batch_size):
                n, a = self.encode(images[start:start + self.batch_size])
                noise.append(np.asarray(n, np.float32))
                found.append(np.asarray(a, np.float32))
            found = np.concatenate(found) if len(self.attributes) else np.zeros((len(images), 0), np.float32)
            noise, _, attrs = encoder_inputs(np.concatenate(noise), found)  # as /api/edit reads them
            rebuilt = self.generate_all(noise, attrs, "rebuilding held-out photos from their codes")
            photo_features, photo_probabilities = self.classifier.both(images)
            rebuilt_features, rebuilt_probabilities = self.classifier.both(rebuilt)
            self.shared["encoded"] = {
                "images": images, "noise": noise, "found": found, "attrs": attrs, "rebuilt": rebuilt,
                "photo_features": photo_features, "photo_probabilities": photo_probabilities,
                "rebuilt_features": rebuilt_features, "rebuilt_probabilities": rebuilt_probabilities}
        return self.shared["encoded"]

    def real_sample(self):
        if "real" not in self.shared:
            features, probabilities = self.classifier.both(self.real_images)
            self.shared["real"] = {"images": self.real_images, "features": features, "probabilities": probabilities}
        return self.shared["real"]


def _r(value, digits=4):
    return None if value is None else round(float(value), digits)


# -- the metrics -------------------------------------------------------------------------------------------------
@register
def attribute_accuracy(ctx: Context) -> dict:
    """Per attribute: generate with it on and off (same noise, other attributes from the training marginals) and
    count how often the classifier agrees with the request; balanced over on/off, beside the classifier's ceiling."""
    if not len(ctx.attributes):
        return {"skipped": "unconditional model: no attributes to check"}
    half = max(1, ctx.attribute_samples // 2)
    rng = np.random.RandomState(ctx.seed + 1)
    noise = rng.standard_normal((half, ctx.latent_size)).astype(np.float32)
    base = (rng.random_sample((half, len(ctx.attributes))) < np.asarray(ctx.frequencies)[None, :]).astype(np.float32)
    ceiling = ctx.classifier.ceiling(list(ctx.attributes))
    per_attribute = {}
    for j, name in enumerate(ctx.attributes):
        on, off = base.copy(), base.copy()
        on[:, j], off[:, j] = 1.0, 0.0
        images = ctx.generate_all(np.concatenate([noise, noise]), np.concatenate([on, off]),
                                  f"attribute {j + 1}/{len(ctx.attributes)} {name}")
        p = ctx.classifier.probabilities(images)[:, ctx.classifier.column(name)]
        on_acc, off_acc = float(np.mean(reads_on(p[:half]))), float(np.mean(~reads_on(p[half:])))
        per_attribute[name] = {"accuracy": _r((on_acc + off_acc) / 2), "on": _r(on_acc), "off": _r(off_acc),
                               "ceiling": _r(ceiling.get(name))}
    accuracies = [v["accuracy"] for v in per_attribute.values()]
    ceilings = [v["ceiling"] for v in per_attribute.values() if v["ceiling"] is not None]
    mean, ceiling_mean = float(np.mean(accuracies)), (float(np.mean(ceilings)) if ceilings else None)
    return {"mean": _r(mean), "ceiling_mean": _r(ceiling_mean),
            "relative_to_ceiling": _r(mean / ceiling_mean) if ceiling_mean else None,
            "samples_per_attribute": 2 * half, "per_attribute": per_attribute}


@register
def attribute_accuracy_real_rows(ctx: Context) -> dict:
    """Per attribute, on faces generated from held-out real attribute rows (coherent combinations, as people ask
    for them): how often the classifier finds what the row asked for, balanced over rows with it on and off.

    attribute_accuracy flips one attribute over independently drawn others, which also asks for combinations the
    data never shows (a bearded woman, bald with blond hair); this one measures faithfulness to real requests."""
    if not len(ctx.attributes):
        return {"skipped": "unconditional model: no attributes to check"}
    sample = ctx.conditioned_sample()
    ceiling = ctx.classifier.ceiling(list(ctx.attributes))
    per_attribute = {}
    for j, name in enumerate(ctx.attributes):
        wanted = is_on(sample["attributes"][:, j])
        found = reads_on(sample["probabilities"][:, ctx.classifier.column(name)])
        on = float(np.mean(found[wanted])) if wanted.any() else None
        off = float(np.mean(~found[~wanted])) if (~wanted).any() else None
        rates = [r for r in (on, off) if r is not None]
        per_attribute[name] = {"accuracy": _r(np.mean(rates)), "on": _r(on), "off": _r(off),
                               "rows_on": int(wanted.sum()), "ceiling": _r(ceiling.get(name))}
    mean = float(np.mean([v["accuracy"] for v in per_attribute.values()]))
    return {"mean": _r(mean), "samples": int(len(sample["attributes"])), "per_attribute": per_attribute}


@register(name="frechet_distance")
def frechet_distance_metric(ctx: Context) -> dict:
    """Frechet distance between held-out real and generated images in the classifier's 256-d feature space, with
    the real set's split-half distance as the noise floor for the same sample size."""
    generated, real = ctx.conditioned_sample()["features"], ctx.real_sample()["features"]
    value = frechet_distance_of(generated, real)
    part_a, part_b = real_halves(len(real), ctx.seed)
    floor = frechet_distance_of(real[part_a], real[part_b]) if len(part_a) >= 2 else None
    return {"value": _r(value), "real_split_half": _r(floor), "feature_space": "attribute classifier (256-d)",
            "generated": int(len(generated)), "real": int(len(real)),
            "half_sample": (half_resolution_reference(ctx, generated, real, (part_a, part_b), floor)
                            if len(part_a) >= 2 else None)}


def real_halves(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B): the two equal halves, seeded, of ``count`` held-out real images that the split-half figures compare
    (the floor A vs B; the half-resolution reference A enlarged vs B). bench/upsampler_reference.py draws the same."""
    order = np.random.RandomState(seed + 2).permutation(count)
    half = count // 2
    return order[:half], order[half:2 * half]


def half_resolution_reference(ctx: Context, generated, real, halves, real_floor) -> dict:
    """Equal-size figures (half the real set each) against the same real half B: the generated faces, the other
    real half A (the floor: ``real_floor``, the split-half distance frechet_distance has measured already), and A
    downsized to half its side and enlarged again by the service's resize rule (the best any model of half the
    resolution, served enlarged, could reach)."""
    from facegen.model_folder import resize_face

    part_a, part_b = halves
    half = len(part_a)
    side = ctx.real_images.shape[1]
    blurred = np.stack([resize_face(resize_face(np.asarray(ctx.real_images[i]), side // 2), side) for i in part_a])
    blurred_features = ctx.classifier.features(blurred)
    return {"size": int(half), "resolution": int(side),
            "generated": _r(frechet_distance_of(generated[:half], real[part_b])),
            "real": _r(real_floor),
            "real_half_resolution_enlarged": _r(frechet_distance_of(blurred_features, real[part_b]))}


@register
def diversity(ctx: Context) -> dict:
    """Mean pairwise distance among generated images relative to real ones (features and pixels); collapse flag."""
    generated, real = ctx.conditioned_sample(), ctx.real_sample()
    from training.classifier import resize_images

    size = ctx.classifier.input_size
    result = diversity_statistics(generated["features"], real["features"],
                                  resize_images(_subsample(generated["images"], PIXEL_PAIR_SAMPLES, ctx.seed), size),
                                  resize_images(_subsample(real["images"], PIXEL_PAIR_SAMPLES, ctx.seed + 1), size),
                                  seed=ctx.seed)
    result["generated"], result["real"] = int(len(generated["features"])), int(len(real["features"]))
    return result


@register
def fid_inception(ctx: Context) -> dict:
    """The usual FID (InceptionV3 pool features at 299x299), only with a local weights file: nothing is downloaded."""
    if ctx.inception_weights is None:
        return {"skipped": "no --inception-weights FILE.h5 given (InceptionV3 weights are never downloaded)"}
    import keras
    from keras import ops

    from training.usage_error import UsageError

    path = Path(ctx.inception_weights)
    if not path.is_file():
        raise UsageError(f"--inception-weights: no such file: {path}")
    model = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3))
    try:
        model.load_weights(str(path))
    except Exception as error:
        raise UsageError(f"--inception-weights: {path} does not fit InceptionV3 without its top ({error})") from None

    def features(images, label):
        progress = Progress(label, len(images), ctx.progress)
        out = []
        for start in range(0, len(images), 32):
            x = ops.convert_to_tensor(np.asarray(images[start:start + 32], np.float32))
            x = ops.image.resize(x, (299, 299), interpolation="bilinear") / 127.5 - 1.0
            out.append(np.asarray(ops.convert_to_numpy(model(x, training=False)), np.float32))
            progress.update(start + len(out[-1]))
        return np.concatenate(out)

    generated = features(ctx.conditioned_sample()["images"], "inception features, generated")
    real = features(ctx.real_sample()["images"], "inception features, real")
    return {"value": _r(frechet_distance_of(generated, real)), "weights": str(path),
            "generated": int(len(generated)), "real": int(len(real))}


# -- the encoder ---------------------------------------------------------------------------------------------------
PSNR_CAP = 100.0  # dB: identical images would be infinite


def psnr(a, b) -> np.ndarray:
    """Per-image peak signal-to-noise ratio in dB of two uint8 image batches [n, H, W, 3]: 10 log10(255^2 / MSE),
    capped at PSNR_CAP for identical images."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    return np.minimum(10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-300)), PSNR_CAP)


def centred_cosine(a, b, centre) -> np.ndarray:
    """Row-wise cosine of two feature batches after subtracting ``centre`` (the real photos' mean feature): the
    classifier's features are ReLU outputs, all positive, so plain cosines are high even between strangers."""
    a = np.asarray(a, np.float64) - centre
    b = np.asarray(b, np.float64) - centre
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def _no_encoder(ctx: Context):
    if ctx.encode is None:
        return {"skipped": "the model has no encoder"}
    if ctx.encoder_images is None or len(ctx.encoder_images) < 2:
        return {"skipped": "fewer than 2 held-out photos to encode"}
    return None


def _pairs(n: int, seed: int):
    """Each index paired with another one (a seeded derangement-like shift), for 'two different people' baselines."""
    order = np.random.RandomState(seed).permutation(n)
    return order, np.roll(order, 1)


@register
def encoder_attributes(ctx: Context) -> dict:
    """How well E's attribute head reads held-out photos: balanced accuracy per attribute against the labels, beside
    the classifier's ceiling (the same photos, another judge)."""
    skipped = _no_encoder(ctx)
    if skipped:
        return skipped
    if not len(ctx.attributes):
        return {"skipped": "unconditional model: no attributes to read"}
    sample = ctx.encoded_sample()
    from training.classifier import accuracy_table

    table = accuracy_table(sample["found"], ctx.encoder_attributes, list(ctx.attributes))
    ceiling = ctx.classifier.ceiling(list(ctx.attributes))
    per_attribute = {name: {"balanced": row["balanced"], "accuracy": row["accuracy"], "positives": row["positives"],
                            "ceiling": _r(ceiling.get(name))} for name, row in table.items()}
    balanced = [row["balanced"] for row in per_attribute.values() if row["balanced"] is not None]
    return {"mean_balanced": _r(np.mean(balanced)) if balanced else None, "photos": int(len(sample["images"])),
            "per_attribute": per_attribute}


@register
def encoder_reconstruction(ctx: Context) -> dict:
    """Held-out photos rebuilt as G(E_z(x), attributes E found): PSNR against the photo (and, for scale, from a
    random code with the same attributes, and from the code with the true labels), and the distance of the
    classifier's features of rebuild and photo relative to the distance between two different photos."""
    skipped = _no_encoder(ctx)
    if skipped:
        return skipped
    sample = ctx.encoded_sample()
    images, n = sample["images"], len(sample["images"])
    rng = np.random.RandomState(ctx.seed + 3)
    random_noise = rng.standard_normal(sample["noise"].shape).astype(np.float32)
    random_rebuilt = ctx.generate_all(random_noise, sample["attrs"], "random codes, same attributes")
    labelled = ctx.generate_all(sample["noise"], np.asarray(ctx.encoder_attributes, np.float32),
                                "rebuilding with the true attributes")
    distance = np.linalg.norm(sample["photo_features"] - sample["rebuilt_features"], axis=1)
    a, b = _pairs(n, ctx.seed + 4)
    between = np.linalg.norm(sample["photo_features"][a] - sample["photo_features"][b], axis=1)
    return {"psnr": _r(np.mean(psnr(images, sample["rebuilt"])), 3),
            "psnr_true_attributes": _r(np.mean(psnr(images, labelled)), 3),
            "psnr_random_code": _r(np.mean(psnr(images, random_rebuilt)), 3),
            "feature_distance": _r(np.mean(distance)),
            "different_photos_feature_distance": _r(np.mean(between)),
            "feature_ratio": _r(np.mean(distance) / np.mean(between)) if np.mean(between) > 0 else None,
            "attributes": f"found by the encoder, on at p >= {ON_THRESHOLD}", "photos": int(n),
            "feature_space": "attribute classifier (256-d)"}


@register
def encoder_edit(ctx: Context) -> dict:
    """Edits of held-out photos: each photo's code with one attribute flipped from what E found (the others kept),
    per attribute. changed: the classifier finds the flipped attribute in its new state; kept: of the other
    attributes, the share whose classifier decision on the edit equals that on the rebuild; success: both at once
    (changed, and every other decision kept). identity: centred cosine of the classifier's features of edit and
    rebuild, and of edit and photo, beside that of two different photos (what 'another person' scores)."""
    skipped = _no_encoder(ctx)
    if skipped:
        return skipped
    if not len(ctx.attributes):
        return {"skipped": "unconditional model: no attributes to edit"}
    sample = ctx.encoded_sample()
    n = len(sample["images"])
    names = list(ctx.edit_attributes or ctx.attributes)
    columns = [ctx.classifier.column(name) for name in ctx.attributes]
    rebuilt_on = reads_on(sample["rebuilt_probabilities"][:, columns])
    centre = ctx.real_sample()["features"].astype(np.float64).mean(axis=0)
    per_attribute, edit_rebuild, edit_photo = {}, [], []
    for name in names:
        j = [a.lower() for a in ctx.attributes].index(name.lower())
        target = 1.0 - sample["attrs"][:, j]
        attrs = sample["attrs"].copy()
        attrs[:, j] = target
        edited = ctx.generate_all(sample["noise"], attrs, f"editing {name}")
        features, probabilities = ctx.classifier.both(edited)
        edited_on = reads_on(probabilities[:, columns])
        changed = edited_on[:, j] == is_on(target)
        others = [k for k in range(len(columns)) if k != j]
        same = edited_on[:, others] == rebuilt_on[:, others]
        kept = same.mean(axis=1) if others else np.ones(n)
        success = changed & (same.all(axis=1) if others else True)
        cos_rebuild = centred_cosine(features, sample["rebuilt_features"], centre)
        cos_photo = centred_cosine(features, sample["photo_features"], centre)
        edit_rebuild.append(cos_rebuild)
        edit_photo.append(cos_photo)
        to_on = is_on(target)
        per_attribute[name] = {
            "changed": _r(changed.mean()), "to_on": _r(changed[to_on].mean()) if to_on.any() else None,
            "to_off": _r(changed[~to_on].mean()) if (~to_on).any() else None, "kept": _r(kept.mean()),
            "success": _r(np.mean(success)), "identity_edit_rebuild": _r(cos_rebuild.mean()),
            "identity_edit_photo": _r(cos_photo.mean())}
    a, b = _pairs(n, ctx.seed + 4)
    strangers = centred_cosine(sample["photo_features"][a], sample["photo_features"][b], centre)
    mean = lambda key: _r(np.mean([row[key] for row in per_attribute.values()]))  # noqa: E731
    return {"changed": mean("changed"), "kept": mean("kept"), "success": mean("success"),
            "identity": {"edit_rebuild": _r(np.mean(edit_rebuild)), "edit_photo": _r(np.mean(edit_photo)),
                         "rebuild_photo": _r(centred_cosine(sample["rebuilt_features"], sample["photo_features"],
                                                            centre).mean()),
                         "different_photos": _r(strangers.mean()),
                         "measure": "cosine of attribute-classifier features centred on the real photos' mean"},
            "photos": int(n), "per_attribute": per_attribute}


@register
def identity(ctx: Context) -> dict:
    """Whether rebuilds and edits are still the person, by dlib's face-recognition network (training/identity.py's
    measure, every edit method the model serves): the framed ceiling, the rebuild, the stranger floor, each edit's
    same-person share and, with the classifier, changed / kept. Skipped without dlib or without the photos' files.
    (TensorFlow is imported by measure, for the SavedModel: this metric needs an exported model folder.)"""
    if ctx.model_dir is None or not ctx.identity_photos:
        return {"skipped": "no model folder and photo files to measure identity on (evaluate --model with --photos)"}
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError as error:
        return {"skipped": f"dlib and face_recognition_models are not installed ({error})"}
    from training.identity import DEFAULT_EDITS, measure, served_methods

    names = [a for a in (ctx.edit_attributes or DEFAULT_EDITS) if a in ctx.attributes] or list(ctx.attributes[:1])
    return measure(ctx.model_dir, ctx.identity_photos, names, ctx.classifier, ctx.progress,
                   methods=served_methods(ctx.model_dir))


def compute_metrics(names, ctx: Context) -> dict:
    """Run the named metrics (all registered ones when ``names`` is None), each timed."""
    names = list(METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        from training.usage_error import UsageError

        raise UsageError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    results = {}
    for name in names:
        start = time.monotonic()
        if ctx.progress:
            print(f"{name} ...", flush=True)
        result = METRICS[name](ctx)
        result["seconds"] = round(time.monotonic() - start, 1)
        results[name] = result
    return results
