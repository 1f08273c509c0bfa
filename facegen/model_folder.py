"""The model-folder contract: the one place that says what a model folder holds and what its manifest means.

Export writes it (``build_manifest``, ``write_manifest``), serving and the training tools read it
(``read_manifest``); a seed's generator inputs are facegen.attributes' (``seed_face``). NumPy only at import time:
TensorFlow is imported by the one function that loads a SavedModel, so a JAX machine can read manifests.

MODEL_DIR/
  saved_model.pb, variables/   TensorFlow SavedModel; GENERATE_SIGNATURE(noise, attrs) -> {"images": uint8};
                               PIXELS_SIGNATURE(noise, attrs) -> {"pixels": float32 [-1, 1]} where the manifest's
                               signature.pixels says so (the same faces before the pixel rule: differentiable);
                               models with an encoder also ENCODE_SIGNATURE(images uint8) -> {"noise", "attrs"}
  manifest.json                MANIFEST_KEYS below; evaluate adds "metrics"
  MODEL_CARD.md, *.png, *.gif  optional: the card and its pictures (the loader ignores them)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from facegen import attributes as attribute_rules

FORMAT = "facegen-model/1"
MANIFEST = "manifest.json"
SAVED_MODEL = "saved_model.pb"
DEFAULT_FILE = "DEFAULT"  # in a models folder: the default model's folder name on its first line
CARD = "MODEL_CARD.md"
GENERATE_SIGNATURE = "serving_default"  # noise float32 [N, latent_size], attrs float32 [N, A] -> images uint8
# The same inputs -> pixels float32 [N, R, R, 3] in [-1, 1]: the generator's output before the pixel rule, so that
# gradients reach the noise, the attributes and the weights (facegen/inversion.py). pixels_to_uint8 of it is exactly
# GENERATE_SIGNATURE's images. Models exported before it lack it (their manifest's signature has no "pixels").
PIXELS_SIGNATURE = "generate_pixels"
# images uint8 [N, R, R, 3], framed as the manifest's encoder.framing says -> noise float32 [N, latent_size],
# attrs float32 [N, A] (probabilities). Only models whose manifest has an "encoder" object.
ENCODE_SIGNATURE = "encode"
FRAMING_DETECTOR = "mtcnn"  # the face detector the framing template was measured with (facegen/framing.py)
# Every call into a SavedModel's generate and encode functions runs on exactly CALL_ROWS rows (padded, in chunks):
# CPU kernels pick their code path by batch size, and on an AVX2 CPU 1, 2, 3, 7, 8 and 15 rows each gave some
# faces one pixel off the 4-row result (bench/call_rows.py), so a face's bytes hung on how many faces shared its
# call. At a fixed size a row's result depends on its own inputs only. 4 rather than 16: a lone 64 px face waits
# about 12 ms instead of 38, for 23% fewer faces/s in a full batch of 16 (4% at 128 px; BENCHMARKS.md, "Batch
# shapes and kernels"); under load the service is bound by HTTP and PNG work, not by the generator.
CALL_ROWS = 4

# What a manifest holds. Serving interprets the first group; the rest is shown (API, card), not interpreted.
REQUIRED_KEYS = ("format", "name", "resolution", "latent_size", "attributes")
MANIFEST_KEYS = REQUIRED_KEYS + ("attribute_frequencies", "attribute_table", "conditional", "architecture",
                                 "parameters", "signature", "encoder", "dataset", "training", "metrics", "created")


class ManifestError(ValueError):
    """A manifest that does not keep the contract; the message names the file and the problem."""


# -- pixels --------------------------------------------------------------------------------------------------
def resize_face(pixels: np.ndarray, size: int) -> np.ndarray:
    """One uint8 [H, W, 3] face at ``size`` x ``size`` by the service's rule (what a client asking ``size=`` gets,
    and what evaluate compares a smaller model with). Lanczos rather than nearest: a GAN face is a small
    photograph, not pixel art; Lanczos also antialiases when a size below the native one is asked for."""
    from PIL import Image

    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    return np.asarray(Image.fromarray(pixels, "RGB").resize((size, size), Image.Resampling.LANCZOS))


def pixels_to_uint8(images, round=np.round, clip=np.clip):
    """Generator output in [-1, 1] -> [0, 255] rounded half to even and clipped, still floating point.

    Export passes ``tf.round`` and ``tf.clip_by_value`` so the graph computes exactly this; training samples and
    evaluation use NumPy's. Cast to uint8 after.
    """
    return clip(round((images + 1.0) * 127.5), 0.0, 255.0)


def to_uint8(images) -> np.ndarray:
    """NumPy [-1, 1] floats -> uint8 pixels, exactly as the exported graph computes them."""
    return pixels_to_uint8(np.asarray(images, np.float32)).astype(np.uint8)


def uint8_to_pixels(pixels):
    """The inverse rule: pixel values 0..255 (already floating point, e.g. float32) -> [-1, 1], as the networks see
    real images in training and as the exported encode graph maps its uint8 input. pixels_to_uint8 undoes it."""
    return pixels / 127.5 - 1.0


def from_uint8(images) -> np.ndarray:
    """NumPy uint8 pixels -> float32 [-1, 1], exactly as the exported encode graph computes them."""
    return uint8_to_pixels(np.asarray(images, np.float32))


# -- the manifest ----------------------------------------------------------------------------------------------
def attribute_table(rows) -> dict:
    """The training set's distinct attribute rows and their counts, for sampling whole, real attribute vectors.

    rows: 0/1 array [N, A] in manifest attribute order -> {"rows": ["0110...", ...], "counts": [...]}, one string of
    A characters per distinct row, most frequent first (ties in row order), so the manifest stays small and diffable.
    """
    rows = np.asarray(rows, dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] == 0 or len(rows) == 0:
        return {"rows": [], "counts": []}
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    order = np.lexsort((np.arange(len(counts)), -counts))
    return {"rows": ["".join("1" if v else "0" for v in distinct[i]) for i in order],
            "counts": [int(counts[i]) for i in order]}


def encoder_field(resolution: int, latent_size: int, num_attributes: int, framing: dict) -> dict:
    """The manifest's "encoder" object: the model has ENCODE_SIGNATURE, what it takes and gives, and the framing its
    input must have. ``framing``: {"landmarks": [[x, y]] * 5 as fractions of the side (facegen.framing.LANDMARKS
    order), "detector": "mtcnn X.Y.Z", and optionally "images" / "skipped" / "spread" / "source" (how it was
    measured)}; "names" and "size" are filled in here."""
    from facegen.framing import LANDMARKS

    r = int(resolution)
    framing = dict(framing)
    landmarks = [[round(float(x), 5), round(float(y), 5)] for x, y in framing.pop("landmarks")]
    return {"signature": ENCODE_SIGNATURE,
            "input": [None, r, r, 3], "dtype": "uint8",
            "output": {"noise": [None, int(latent_size)], "attrs": [None, int(num_attributes)]},
            "attrs": "probabilities",
            "framing": {"landmarks": landmarks, "names": list(LANDMARKS), "size": r, **framing}}


def build_manifest(*, name: str, resolution: int, latent_size: int, attributes, architecture: str, parameters: int,
                   attribute_frequencies=None, attribute_table=None, dataset=None, training=None, metrics=None,
                   created: str, encoder=None) -> dict:
    """A complete manifest for a generator exported with GENERATE_SIGNATURE; ``encoder`` (from encoder_field) for
    a model that also has ENCODE_SIGNATURE, else the manifest says "encoder": null."""
    attributes = list(attributes)
    a = len(attributes)
    frequencies = [0.5] * a if attribute_frequencies is None else attribute_frequencies
    return {
        "format": FORMAT,
        "name": name,
        "resolution": int(resolution),
        "latent_size": int(latent_size),
        "attributes": attributes,
        "attribute_frequencies": [round(float(f), 4) for f in frequencies],
        # Absent for models exported before the table existed: serving then draws attributes independently.
        **({"attribute_table": attribute_table} if attribute_table else {}),
        "conditional": a > 0,
        "architecture": architecture,
        "parameters": int(parameters),
        "signature": generate_signature_field(resolution, latent_size, a),
        # null (or absent, in exports from before the encoder): the model cannot encode a photo.
        "encoder": encoder,
        "dataset": dict(dataset or {}),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "created": created,
    }


def generate_signature_field(resolution: int, latent_size: int, num_attributes: int) -> dict:
    """The manifest's "signature" object: GENERATE_SIGNATURE (uint8 images) and, under "pixels", PIXELS_SIGNATURE
    (the same faces as float32 in [-1, 1])."""
    r, latent, a = int(resolution), int(latent_size), int(num_attributes)
    return {"name": GENERATE_SIGNATURE,
            "inputs": {"noise": [None, latent], "attrs": [None, a]},
            "output": {"images": [None, r, r, 3], "dtype": "uint8"},
            "pixels": {"name": PIXELS_SIGNATURE, "output": {"pixels": [None, r, r, 3], "dtype": "float32",
                                                            "range": [-1.0, 1.0]}}}


def has_pixels(manifest: dict) -> bool:
    """Whether the model's SavedModel has PIXELS_SIGNATURE (its manifest's signature says so)."""
    signature = manifest.get("signature")
    return isinstance(signature, dict) and isinstance(signature.get("pixels"), dict) and \
        signature["pixels"].get("name") == PIXELS_SIGNATURE


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_manifest(manifest, where) -> dict:
    """Check the fields serving relies on; ManifestError naming ``where`` and the problem otherwise."""

    def need(ok: bool, problem: str) -> None:
        if not ok:
            raise ManifestError(f"{where}: {problem}")

    need(isinstance(manifest, dict), "is not a JSON object")
    need(manifest.get("format") == FORMAT, f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
    for key in ("resolution", "latent_size"):
        need(_is_count(manifest.get(key)), f"{key} must be a positive integer, not {manifest.get(key)!r}")
    attributes = manifest.get("attributes")
    need(isinstance(attributes, list) and all(isinstance(a, str) and a for a in attributes),
         "attributes must be a list of non-empty strings")
    # Queries name attributes case-insensitively, so two names differing only in case would be ambiguous.
    need(len({a.lower() for a in attributes}) == len(attributes), "attribute names must be unique ignoring case")
    need(all(attribute_rules.NAME.fullmatch(a) for a in attributes),
         "attribute names may hold only letters, digits and '_' (they travel comma-separated in URLs)")
    frequencies = manifest.get("attribute_frequencies", [0.5] * len(attributes))
    need(isinstance(frequencies, list) and len(frequencies) == len(attributes)
         and all(isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f) and 0 <= f <= 1
                 for f in frequencies),
         "attribute_frequencies must be one probability in [0, 1] per attribute")
    if "attribute_table" in manifest:  # absent in older exports: serving then draws attributes independently
        problem = attribute_rules.table_problem(manifest["attribute_table"], len(attributes))
        need(problem is None, f"attribute_table {problem}")
    if manifest.get("encoder") is not None:  # null or absent: a model that cannot encode
        problem = encoder_problem(manifest["encoder"], manifest["resolution"], manifest["latent_size"],
                                  len(attributes))
        need(problem is None, f"encoder {problem}")
        for key in EDIT_GAIN_KEYS.values():
            if key in manifest["encoder"]:
                problem = edit_gains_problem(manifest["encoder"][key], attributes)
                need(problem is None, f"encoder {key} {problem}")
    return manifest


EDIT_GAIN_RANGE = (0.5, 4.0)  # an edit's push (facegen.photo_edit.pushed): from half as far to four times as far
# The encoder object's optional gains, one set per kind of edit (each measured on its own: the gains that make the
# encoder's edits read as asked made the tuned copy's overshoot): the edits of the exported G (methods generator and
# photo) and those of the per-photo tuned copy (methods pti and pti-photo, facegen/inversion.py).
EDIT_GAIN_KEYS = {False: "edit_gains", True: "inversion_edit_gains"}


def edit_gains(manifest: dict, inverted: bool = False) -> np.ndarray:
    """float32 [A]: how far an edit pushes each attribute it changes (facegen.photo_edit.pushed), from the encoder
    object's optional EDIT_GAIN_KEYS[inverted] {attribute: gain} (written with the identity figures they were measured
    with, ``python -m training.identity --write``); 1.0 for attributes it does not name, and for models without it."""
    gains = (manifest.get("encoder") or {}).get(EDIT_GAIN_KEYS[inverted]) or {}
    return np.array([float(gains.get(name, 1.0)) for name in manifest["attributes"]], np.float32)


def edit_gains_problem(gains, attributes) -> str | None:
    if not isinstance(gains, dict):
        return "must be an object {attribute: gain}"
    unknown = [name for name in gains if name not in attributes]
    if unknown:
        return f"names attributes the model does not have: {unknown}"
    low, high = EDIT_GAIN_RANGE
    bad = {name: g for name, g in gains.items() if isinstance(g, bool) or not isinstance(g, (int, float))
           or not math.isfinite(g) or not low <= g <= high}
    return f"must be numbers in [{low:g}, {high:g}], not {bad}" if bad else None


def encoder_problem(encoder, resolution: int, latent_size: int, num_attributes: int) -> str | None:
    """What is wrong with a manifest's "encoder" object (None when it keeps the contract)."""
    if not isinstance(encoder, dict):
        return "must be an object (or null for a model that cannot encode)"
    if encoder.get("signature") != ENCODE_SIGNATURE:
        return f"signature must be {ENCODE_SIGNATURE!r}, not {encoder.get('signature')!r}"
    if encoder.get("input") != [None, resolution, resolution, 3]:
        return f"input must be [null, {resolution}, {resolution}, 3] (the model's resolution), not {encoder.get('input')!r}"
    if encoder.get("output") != {"noise": [None, latent_size], "attrs": [None, num_attributes]}:
        return f"output must be noise [null, {latent_size}] and attrs [null, {num_attributes}]"
    framing = encoder.get("framing")
    if not isinstance(framing, dict):
        return "framing must be an object (landmarks, names, size, detector)"
    from facegen.framing import LANDMARKS, check_template

    try:
        check_template(framing.get("landmarks"))
    except ValueError as error:
        return f"framing landmarks: {error}"
    if framing.get("names") != list(LANDMARKS):
        return f"framing names must be {list(LANDMARKS)}"
    if framing.get("size") != resolution:
        return f"framing size must be the resolution ({resolution}), not {framing.get('size')!r}"
    if not isinstance(framing.get("detector"), str) or not framing["detector"]:
        return "framing detector must name the detector and its version"
    return None


def read_manifest(model_dir) -> dict:
    """The validated manifest of a model folder; ManifestError if it is missing, not JSON or breaks the contract."""
    path = Path(model_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{model_dir}: {MANIFEST} is missing (not a facegen model folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: not valid JSON ({error})") from None
    return validate_manifest(manifest, path)


def write_manifest(model_dir, manifest: dict) -> Path:
    """Write atomically (a reader never sees half a manifest)."""
    path = Path(model_dir) / MANIFEST
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)
    return path


# -- the models folder -------------------------------------------------------------------------------------------
def read_default(models_dir) -> str | None:
    """The default model's folder name: the first line of MODELS_DIR/DEFAULT_FILE; None where there is no such file.
    ManifestError for an empty file (a name is what it is for)."""
    path = Path(models_dir) / DEFAULT_FILE
    if not path.is_file():
        return None
    lines = path.read_text().strip().splitlines()
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path} is empty: write the default model's folder name on its first line")
    return lines[0].strip()


def write_default(models_dir, name: str) -> Path:
    """Record ``name`` (a folder of MODELS_DIR) as the default model."""
    path = Path(models_dir) / DEFAULT_FILE
    path.write_text(name + "\n")
    return path


# -- the SavedModel -----------------------------------------------------------------------------------------------
def load_encode(model_dir, loaded=None):
    """encode(images uint8 [N, R, R, 3]) -> (noise float32 [N, L], attrs float32 [N, A] probabilities) of a model
    whose manifest has an encoder; ``loaded``: the SavedModel object if already loaded. Imports TensorFlow."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir)) if loaded is None else loaded
    if not hasattr(loaded, "encode"):
        raise ValueError(f"{model_dir}: the SavedModel has no {ENCODE_SIGNATURE!r} function")
    function = loaded.encode.get_concrete_function()

    def encode_rows(images):
        out = function(tf.constant(images))
        return np.asarray(out["noise"].numpy(), np.float32), np.asarray(out["attrs"].numpy(), np.float32)

    def encode(images):
        return in_fixed_calls(encode_rows, np.asarray(images, np.uint8))

    return encode


def load_saved_model(model_dir):
    """The SavedModel object of a model folder (``tf.saved_model.load``). Imports TensorFlow."""
    import tensorflow as tf

    return tf.saved_model.load(str(model_dir))


def generate_function(loaded, rows: int = CALL_ROWS):
    """generate(noise, attrs) -> uint8 [N, H, W, 3] numpy, from a loaded SavedModel: its direct ``generate``
    function where the export has it (no dict, no retracing per batch size: a traced graph with a [None, ...] batch
    dimension), else GENERATE_SIGNATURE (the same graph), called on ``rows`` rows at a time (CALL_ROWS; other values
    for bench/call_rows.py only). Imports TensorFlow."""
    import tensorflow as tf

    if hasattr(loaded, "generate"):
        function = loaded.generate.get_concrete_function()
        call = lambda noise, attrs: function(noise, attrs)  # noqa: E731
    else:
        signature = loaded.signatures[GENERATE_SIGNATURE]
        call = lambda noise, attrs: signature(noise=noise, attrs=attrs)["images"]  # noqa: E731

    def generate_rows(noise, attrs) -> np.ndarray:
        return np.asarray(call(tf.constant(noise), tf.constant(attrs)).numpy(), dtype=np.uint8)

    def generate(noise, attrs) -> np.ndarray:
        return in_fixed_calls(generate_rows, np.asarray(noise, np.float32), np.asarray(attrs, np.float32), rows=rows)

    return generate


def in_fixed_calls(function, *inputs: np.ndarray, rows: int = CALL_ROWS):
    """``function`` over the inputs' rows in calls of exactly ``rows`` rows (the last padded with zeros, its padding
    dropped from the results), so no row's result depends on how many rows came with it (CALL_ROWS).
    ``function`` returns one array or a tuple of arrays, each with a row per input row."""
    count = inputs[0].shape[0]
    padded = max(rows, -(-count // rows) * rows)  # no rows: one call all padding, for the results' shapes
    if padded != count:
        inputs = tuple(np.concatenate([x, np.zeros((padded - count,) + x.shape[1:], x.dtype)]) for x in inputs)
    parts = [function(*(x[start:start + rows] for x in inputs)) for start in range(0, padded, rows)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([part[k] for part in parts])[:count] for k in range(len(parts[0])))
    return np.concatenate(parts)[:count]


def pixels_function(loaded):
    """pixels(noise, attrs) -> float32 [N, H, W, 3] tensor in [-1, 1], from a loaded SavedModel with
    PIXELS_SIGNATURE: a TensorFlow function (tensors in, a tensor out), so a GradientTape sees through it to the
    inputs and to the SavedModel's variables. Imports TensorFlow."""
    if not hasattr(loaded, PIXELS_SIGNATURE):
        raise ValueError(f"the SavedModel has no {PIXELS_SIGNATURE!r} function (exported before it: upgrade it with "
                         "python -m training export --upgrade MODEL_DIR)")
    function = getattr(loaded, PIXELS_SIGNATURE).get_concrete_function()
    return lambda noise, attrs: function(noise, attrs)


def load_generate(model_dir):
    """(generate(noise, attrs) -> uint8 [N, H, W, 3] numpy, the loaded SavedModel). Imports TensorFlow."""
    loaded = load_saved_model(model_dir)
    return generate_function(loaded), loaded
