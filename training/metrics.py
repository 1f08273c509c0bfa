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
        on_acc, off_acc = float(np.mean(p[:half] > 0.5)), float(np.mean(p[half:] <= 0.5))
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
        wanted = sample["attributes"][:, j] > 0.5
        found = sample["probabilities"][:, ctx.classifier.column(name)] > 0.5
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
    order = np.random.RandomState(ctx.seed + 2).permutation(len(real))
    half = len(real) // 2
    floor = frechet_distance_of(real[order[:half]], real[order[half:2 * half]]) if half >= 2 else None
    return {"value": _r(value), "real_split_half": _r(floor), "feature_space": "attribute classifier (256-d)",
            "generated": int(len(generated)), "real": int(len(real))}


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

    from training.errors import UsageError

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


def compute_metrics(names, ctx: Context) -> dict:
    """Run the named metrics (all registered ones when ``names`` is None), each timed."""
    names = list(METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        from training.errors import UsageError

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
