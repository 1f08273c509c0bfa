"""The attribute classifier `evaluate` scores generated faces with: a small Keras 3 CNN, trained once per data set.

Input: uint8 RGB images, resized to INPUT_SIZE x INPUT_SIZE (64). Network: 4 blocks of strided 3x3 conv (32, 64,
128, 256 channels) + BatchNorm + ReLU, global average pool, a 256-d feature layer ("features", also the space the
Frechet distance and the diversity figures are measured in), a sigmoid over every attribute of the data set (so one
classifier file serves models conditioned on different attribute subsets).

The loss is binary cross-entropy balanced per attribute (positives and negatives weigh the same), so a 0.5 threshold
is a balanced decision even for rare attributes such as Eyeglasses. Held-out balanced accuracy per attribute (on the
validation/test partitions, or a 10% hold-out when the data has none) is the "ceiling": a generator can score no
better than the judge can see.

Saved as FILE.keras plus a JSON sidecar FILE.json (attribute names, input size, held-out accuracy, data source).
Backend-neutral: keras + keras.ops + numpy only, so it runs on TensorFlow and on JAX.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from training.data import TRAIN
from training.usage_error import UsageError
from training.timestamps import utc_now

INPUT_SIZE = 64
WIDTHS = (32, 64, 128, 256)
FEATURES = 256
FORMAT = "facegen-classifier/1"
# The judge's decision: it reads an attribute as present where its probability is above this (every figure that
# counts its readings, in evaluate and identity, goes through reads_on).
READ_ON = 0.5


def sidecar_path(path) -> Path:
    return Path(path).with_suffix(".json")


def default_path(cache, input_size: int = INPUT_SIZE) -> Path | None:
    """``<cache>.classifier.keras`` beside the cache file (``.classifier128.keras`` for a 128 px judge; None when the
    cache has no file)."""
    if getattr(cache, "path", None) is None:
        return None
    path = Path(cache.path)
    return path.with_name(path.stem + ".classifier" + ("" if input_size == INPUT_SIZE else str(input_size)) + ".keras")


def widths_for(input_size: int) -> tuple:
    """Conv widths: WIDTHS at 64 px, one narrower block in front per doubling, so every size ends at 4x4 and a
    128 px judge sees the detail a 64 px one averages away."""
    extra = int(round(math.log2(input_size / INPUT_SIZE)))
    if extra < 0 or INPUT_SIZE * 2 ** extra != input_size:
        raise UsageError(f"the classifier's input size must be {INPUT_SIZE} times a power of two, got {input_size}")
    return tuple(WIDTHS[0] // 2 ** (extra - i) for i in range(extra)) + WIDTHS


def data_fingerprint(cache) -> dict:
    meta = cache.meta or {}
    return {"path": str(Path(cache.path).resolve()) if getattr(cache, "path", None) else None,
            "dataset_name": meta.get("dataset_name"), "synthetic": bool(meta.get("synthetic")),
            "images": int(len(cache.images)), "size": int(cache.images.shape[1]),
            "source": meta.get("source")}


def resize_images(images, size: int = INPUT_SIZE, batch: int = 512) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3] (bilinear with antialiasing when shrinking)."""
    images = np.asarray(images)
    if images.shape[1] == size and images.shape[2] == size:
        return images.astype(np.uint8, copy=False)
    from keras import ops

    out = np.empty((len(images), size, size, 3), np.uint8)
    for start in range(0, len(images), batch):
        chunk = ops.convert_to_tensor(images[start:start + batch].astype(np.float32))
        resized = ops.image.resize(chunk, (size, size), interpolation="bilinear", antialias=True)
        out[start:start + batch] = np.clip(np.round(ops.convert_to_numpy(resized)), 0, 255).astype(np.uint8)
    return out


def build_network(num_attributes: int, input_size: int = INPUT_SIZE):
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 3), name="images")  # uint8 values 0..255 as float
    h = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    for i, width in enumerate(widths_for(input_size)):
        h = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(h)  # settles within a short fit
        h = layers.ReLU()(h)
    h = layers.GlobalAveragePooling2D()(h)
    features = layers.Dense(FEATURES, activation="relu", name="features")(h)
    outputs = layers.Dense(num_attributes, activation="sigmoid", name="attributes")(features)
    return keras.Model(inputs, outputs, name="facegen_attribute_classifier")


def balanced_bce(frequencies):
    """Binary cross-entropy where each attribute's positives and negatives carry half the weight each."""
    from keras import ops

    f = np.clip(np.asarray(frequencies, np.float32), 0.01, 0.99)
    w_pos, w_neg = 0.5 / f, 0.5 / (1.0 - f)

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        p = ops.clip(ops.cast(y_pred, "float32"), 1e-6, 1.0 - 1e-6)
        terms = -(w_pos * y_true * ops.log(p) + w_neg * (1.0 - y_true) * ops.log(1.0 - p))
        return ops.mean(terms, axis=-1)

    return loss


def reads_on(probabilities) -> np.ndarray:
    """bool, the shape of ``probabilities``: where the judge reads each attribute as present (above READ_ON)."""
    return np.asarray(probabilities) > READ_ON


def accuracy_table(probabilities, labels, names) -> dict:
    """Per attribute: accuracy, balanced accuracy (mean of the on and off recalls) and the positives' count."""
    predicted = reads_on(probabilities)
    labels = np.asarray(labels).astype(bool)
    table = {}
    for j, name in enumerate(names):
        on, off = labels[:, j], ~labels[:, j]
        recalls = [float(np.mean(predicted[on, j])) if on.any() else None,
                   float(np.mean(~predicted[off, j])) if off.any() else None]
        known = [r for r in recalls if r is not None]
        table[name] = {"accuracy": round(float(np.mean(predicted[:, j] == labels[:, j])), 4),
                       "balanced": round(float(np.mean(known)), 4) if known else None,
                       "positives": int(on.sum())}
    return table


class AttributeClassifier:
    """A trained classifier: ``probabilities(images)``, ``features(images)``, ``both(images)`` on uint8 images."""

    def __init__(self, model, info: dict, path: Path | None = None):
        import keras

        self.model = model
        self.info = info
        self.path = Path(path) if path is not None else None
        self.attribute_names = list(info["attribute_names"])
        self.input_size = int(info.get("input_size", INPUT_SIZE))
        self._both = keras.Model(model.inputs, [model.get_layer("features").output, model.outputs[0]])

    # -- the ceiling ---------------------------------------------------------------------------------------
    def ceiling(self, names=None) -> dict:
        """Held-out balanced accuracy per attribute (None where the hold-out had only one class)."""
        held = {k.lower(): v for k, v in self.info.get("held_out", {}).get("per_attribute", {}).items()}
        return {n: held.get(n.lower(), {}).get("balanced") for n in (names or self.attribute_names)}

    def column(self, name: str) -> int:
        lowered = [n.lower() for n in self.attribute_names]
        if name.lower() not in lowered:
            raise UsageError(f"the classifier {self.path} knows no attribute {name!r}; it has {self.attribute_names}")
        return lowered.index(name.lower())

    # -- inference -----------------------------------------------------------------------------------------
    def both(self, images, batch_size: int = 256):
        """(features float32 [N, 256], probabilities float32 [N, A]) for uint8 images of any square size."""
        images = resize_images(images, self.input_size)
        if len(images) == 0:
            return (np.zeros((0, FEATURES), np.float32), np.zeros((0, len(self.attribute_names)), np.float32))
        feats, probs = [], []
        for start in range(0, len(images), batch_size):
            f, p = self._both.predict_on_batch(images[start:start + batch_size])
            feats.append(np.asarray(f, np.float32))
            probs.append(np.asarray(p, np.float32))
        return np.concatenate(feats), np.concatenate(probs)

    def probabilities(self, images, batch_size: int = 256) -> np.ndarray:
        return self.both(images, batch_size)[1]

    def features(self, images, batch_size: int = 256) -> np.ndarray:
        return self.both(images, batch_size)[0]

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix != ".keras":
            raise UsageError(f"--classifier: {path} must end in .keras")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.stem + ".tmp.keras")
        self.model.save(temporary)
        temporary.replace(path)
        sidecar_path(path).write_text(json.dumps(self.info, indent=2) + "\n")
        self.path = path
        return path


def load_classifier(path) -> AttributeClassifier:
    import keras

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--classifier: no such file: {path}")
    side = sidecar_path(path)
    if not side.is_file():
        raise UsageError(f"--classifier: {path} has no sidecar {side.name} (attribute names, accuracy)")
    try:
        info = json.loads(side.read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"format is {info.get('format')!r}, expected {FORMAT!r}")
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # corrupt zip, wrong JSON, a model that is not ours
        raise UsageError(f"--classifier: {path} is not a facegen attribute classifier ({error})") from None
    return AttributeClassifier(model, info, path)


def split_indices(partition, seed: int = 0):
    """(train, held_out) indices: the training partition vs the others; with no held-out partition, a random 10%
    hold-out."""
    partition = np.asarray(partition)
    train, held = np.flatnonzero(partition == TRAIN), np.flatnonzero(partition != TRAIN)
    if len(held) == 0 or len(train) == 0:
        order = np.random.RandomState(seed).permutation(len(partition))
        cut = max(1, len(order) // 10)
        held, train = np.sort(order[:cut]), np.sort(order[cut:])
    return train, held


class _Deadline:
    """A Keras callback stopping fit after ``seconds`` (checked after every batch)."""

    def __new__(cls, seconds):
        import keras

        class Deadline(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = time.monotonic()
                self.stopped = False

            def on_train_batch_end(self, batch, logs=None):
                if seconds and time.monotonic() - self.start > seconds:
                    self.model.stop_training = True
                    self.stopped = True

        return Deadline()


def train_classifier(cache, epochs: int = 3, batch_size: int = 128, max_train: int = 20000, max_held_out: int = 5000,
                     max_seconds: float | None = None, seed: int = 0, progress: bool = True,
                     learning_rate: float = 2e-3, input_size: int = INPUT_SIZE) -> AttributeClassifier:
    """Train on the cache's training partition, measure the ceiling on its held-out images. ``max_seconds`` (None:
    all ``epochs``) cuts the training short: then the judge, and every figure it gives, depends on the machine's
    speed, so by default a judge trains to the end."""
    import keras

    names = list(cache.attribute_names)
    if not names:
        raise UsageError("the data has no attributes: an attribute classifier cannot be trained")
    train, held = split_indices(cache.partition, seed)
    rng = np.random.RandomState(seed)
    if len(train) > max_train:
        train = np.sort(rng.choice(train, max_train, replace=False))
    if len(held) > max_held_out:
        held = np.sort(rng.choice(held, max_held_out, replace=False))
    if len(train) < 16:
        raise UsageError(f"the data has {len(train)} training images: too few to train an attribute classifier")
    start = time.monotonic()
    x = resize_images(cache.images[train], input_size)
    y = np.asarray(cache.attributes[train], np.float32)
    frequencies = y.mean(axis=0)
    keras.utils.set_random_seed(seed)
    model = build_network(len(names), input_size)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=balanced_bce(frequencies))
    if progress:
        print(f"training the attribute classifier on {len(train)} images ({input_size}x{input_size}, "
              f"{len(names)} attributes, {epochs} epochs)", flush=True)
    deadline = _Deadline(max_seconds)
    verbose = (1 if sys.stdout.isatty() else 2) if progress else 0
    model.fit(x, y, batch_size=min(batch_size, len(x)), epochs=epochs, shuffle=True,
              verbose=verbose, callbacks=[deadline])
    train_seconds = time.monotonic() - start
    info = {"format": FORMAT, "attribute_names": names, "input_size": input_size, "features": FEATURES,
            "trained": {"images": int(len(train)), "epochs": epochs, "seconds": round(train_seconds, 1),
                        "stopped_at_deadline": bool(deadline.stopped), "backend": keras.backend.backend(),
                        "date": utc_now()},
            "data": data_fingerprint(cache), "held_out": {}}
    classifier = AttributeClassifier(model, info)
    # The ceiling: how well the judge sees each attribute on real faces it never trained on.
    probabilities = classifier.probabilities(cache.images[held])
    table = accuracy_table(probabilities, cache.attributes[held], names)
    balanced = [v["balanced"] for v in table.values() if v["balanced"] is not None]
    info["held_out"] = {"images": int(len(held)),
                        "source": "validation/test partitions" if np.any(np.asarray(cache.partition) != TRAIN)
                        else "random 10% hold-out",
                        "mean_balanced": round(float(np.mean(balanced)), 4) if balanced else None,
                        "per_attribute": table}
    if progress:
        print(f"attribute classifier: {train_seconds:.0f} s, held-out balanced accuracy "
              f"{info['held_out']['mean_balanced']} on {len(held)} images", flush=True)
    return classifier


def obtain_classifier(cache, path=None, progress: bool = True, input_size: int = INPUT_SIZE,
                      **train_kwargs) -> AttributeClassifier:
    """Load PATH if it exists, else train on the cache and save to PATH (default: beside the cache)."""
    explicit = path is not None
    path = Path(path) if explicit else default_path(cache, input_size)
    if path is not None and path.suffix != ".keras":
        raise UsageError(f"--classifier: {path} must end in .keras")
    if path is not None and path.is_file():
        classifier = load_classifier(path)
        if classifier.input_size != input_size:
            raise UsageError(f"--classifier: {path} judges {classifier.input_size} px faces; this evaluation "
                             f"judges at {input_size} px (--judge-size)")
        if not explicit and classifier.info.get("data") != data_fingerprint(cache):
            if progress:
                print(f"{path} was trained on other data; retraining", flush=True)
        else:
            if progress:
                print(f"using the attribute classifier {path} (held-out balanced accuracy "
                      f"{classifier.info.get('held_out', {}).get('mean_balanced')})", flush=True)
            return classifier
    classifier = train_classifier(cache, progress=progress, input_size=input_size, **train_kwargs)
    if path is not None:
        try:
            classifier.save(path)
            if progress:
                print(f"saved the attribute classifier to {path}", flush=True)
        except OSError as error:
            if explicit:
                raise UsageError(f"--classifier: cannot write {path}: {error}") from None
            print(f"warning: could not save the attribute classifier beside the data ({error})", flush=True)
    return classifier
