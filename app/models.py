"""Model folders (docs/ARCHITECTURE.md) -> loaded generators: the manifest is the only description serving trusts.

:meth:`Model.generate` is the one call into TensorFlow's generator; every endpoint goes through it with a batch, so
a micro-batcher sits in front of it without touching the endpoints. A model whose manifest has an ``encoder`` key
also loads its SavedModel's encode function: :meth:`Model.encode` (framed photos -> latent and attribute
probabilities), with the framing it expects (:class:`EncoderSpec`).
"""

import hashlib
import logging
import re
import time
from pathlib import Path

import numpy as np

from app.limits import MODEL_NAME_PATTERN
from facegen import attributes, framing, model_folder
from facegen.model_folder import DEFAULT_FILE, MANIFEST, SAVED_MODEL

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model folder that cannot be served: raised at startup so a broken model never half-serves."""


class EncoderSpec:
    """The manifest's ``encoder`` object (checked by facegen.model_folder.validate_manifest) as serving uses it: the
    side of the framed photos the encoder takes (``size``, the model's resolution) and the framing template (the
    five landmarks as fractions of the side, in facegen.framing.LANDMARKS order)."""

    def __init__(self, field: dict):
        framing_field = field["framing"]
        self.template = framing.check_template(framing_field["landmarks"])
        self.size: int = int(framing_field["size"])
        self.detector: str | None = framing_field.get("detector")


class ModelDescription:
    """What a model folder's manifest says, read without TensorFlow: enough to check a query (app/params.py),
    resolve a seed (app/faces.py) and name the model. :class:`Model` adds the SavedModel's calls. Equality is
    identity, so a value holding one is a safe cache key."""

    def __init__(self, name: str, path: Path, manifest: dict):
        self.name = name
        self.path = path
        self.manifest = manifest
        self.resolution: int = manifest["resolution"]
        self.latent_size: int = manifest["latent_size"]
        self.attributes: tuple[str, ...] = tuple(manifest["attributes"])
        self.attribute_frequencies = np.asarray(
            manifest.get("attribute_frequencies", [0.5] * len(self.attributes)), dtype=np.float64)
        # The training set's distinct attribute rows (checked by validate_manifest), or None for an older export:
        # the open attributes of a query are then drawn independently (facegen/attributes.py).
        self.attribute_table = attributes.AttributeTable.from_manifest(manifest.get("attribute_table"),
                                                                       self.attributes)
        self.version = _model_version(path)
        self.edit_gains = model_folder.edit_gains(manifest)  # how far an edit pushes each attribute it changes
        self.inversion_edit_gains = model_folder.edit_gains(manifest, inverted=True)  # the same for the pti methods

    @property
    def conditional(self) -> bool:
        return len(self.attributes) > 0

    @property
    def attribute_sampling(self) -> str:
        """"table" (whole training rows) or "independent" (each attribute from its frequency): /api/models."""
        return attributes.TABLE if self.attribute_table is not None else attributes.INDEPENDENT


class Model(ModelDescription):
    """One loaded model folder: its description and the SavedModel's generate (and encode) calls."""

    def __init__(self, name: str, path: Path, manifest: dict, saved_model):
        super().__init__(name, path, manifest)
        self._saved_model = saved_model
        self._generate = model_folder.generate_function(saved_model)  # the contract's call: no Keras predict()
        self.load_seconds: float | None = None  # load + warm-up time, set by load_models (for /metrics)
        # The encoder, when the manifest has an encoder object (null or absent: the model cannot encode).
        self.encoder: EncoderSpec | None = None
        self._encode = None
        if manifest.get("encoder") is not None:
            self.encoder = EncoderSpec(manifest["encoder"])
            try:
                self._encode = model_folder.load_encode(path, loaded=saved_model)
            except ValueError as error:
                raise ModelError(f"{error}, but its manifest has an encoder object") from None

    @property
    def can_encode(self) -> bool:
        """Whether uploaded photos can be encoded (/api/encode, /api/edit): the export has an encoder."""
        return self._encode is not None

    def __repr__(self) -> str:
        encoder = ", encoder" if self.can_encode else ""
        return (f"Model({self.name!r}, {self.resolution}px, latent {self.latent_size}, {len(self.attributes)} attrs"
                f"{encoder})")

    def generate(self, noise: np.ndarray, attrs: np.ndarray) -> np.ndarray:
        """float32 noise [N, latent_size] and attrs [N, A] -> uint8 RGB [N, H, W, 3]."""
        noise = np.asarray(noise, dtype=np.float32)
        attrs = np.asarray(attrs, dtype=np.float32)
        if noise.ndim != 2 or noise.shape[1] != self.latent_size:
            raise ValueError(f"noise must be [N, {self.latent_size}], got {noise.shape}")
        if attrs.shape != (noise.shape[0], len(self.attributes)):
            raise ValueError(f"attrs must be [{noise.shape[0]}, {len(self.attributes)}], got {attrs.shape}")
        return self._generate(noise, attrs)

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB framed photos [N, S, S, 3] (S = encoder.size) -> (noise float32 [N, latent_size], attribute
        probabilities float32 [N, A]). Raises ValueError for a model without an encoder or a wrong shape."""
        if not self.can_encode:
            raise ValueError(f"model {self.name!r} has no encoder")
        images = np.asarray(images)
        size = self.encoder.size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ValueError(f"images must be uint8 [N, {size}, {size}, 3], got {images.dtype} {list(images.shape)}")
        noise, probabilities = self._encode(images)
        count = images.shape[0]
        if noise.shape != (count, self.latent_size) or probabilities.shape != (count, len(self.attributes)):
            raise ValueError(f"the encoder returned noise {list(noise.shape)} and attrs {list(probabilities.shape)}, "
                             f"expected [{count}, {self.latent_size}] and [{count}, {len(self.attributes)}]")
        return noise, probabilities


def _model_version(path: Path) -> str:
    """A short digest of the files that define the model's output, so a re-export changes ETags and cache keys."""
    digest = hashlib.sha256()
    for part in (MANIFEST, "fingerprint.pb", SAVED_MODEL):
        file = path / part
        if file.is_file():
            digest.update(part.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _checked_folder(path: Path, name: str | None) -> tuple[str, Path, dict]:
    """(name, path, manifest) of a model folder whose name and manifest pass and whose SavedModel file is there."""
    path = Path(path)
    name = name or path.name
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ModelError(f"{path}: folder name {name!r} is not a valid model name ({MODEL_NAME_PATTERN})")
    if not (path / SAVED_MODEL).is_file():
        raise ModelError(f"{path}: {SAVED_MODEL} is missing (not a TensorFlow SavedModel)")
    try:
        manifest = model_folder.read_manifest(path)
    except model_folder.ManifestError as error:
        raise ModelError(str(error)) from None
    return name, path, manifest


def describe_model(path: Path, name: str | None = None) -> ModelDescription:
    """A model folder's description without loading TensorFlow (its SavedModel is only checked to be there);
    ModelError where the folder cannot be served."""
    return ModelDescription(*_checked_folder(path, name))


def load_model(path: Path, name: str | None = None) -> Model:
    name, path, manifest = _checked_folder(path, name)
    try:
        saved_model = model_folder.load_saved_model(path)
    except Exception as error:  # TensorFlow raises many types for a damaged SavedModel
        raise ModelError(f"{path}: cannot load the SavedModel ({type(error).__name__}: {error})") from None
    return Model(name, path, manifest, saved_model)


def warm_up(model: Model) -> None:
    """Generate one face and check it against the manifest: traces the graph and proves the model serves."""
    try:
        images = model.generate(np.zeros((1, model.latent_size), np.float32),
                                np.zeros((1, len(model.attributes)), np.float32))
    except Exception as error:
        raise ModelError(f"{model.path}: generating a face failed ({type(error).__name__}: {error})") from None
    expected = (1, model.resolution, model.resolution, 3)
    if images.shape != expected:
        raise ModelError(f"{model.path}: the generator returned {images.shape}, the manifest promises {expected}")
    if model.can_encode:
        size = model.encoder.size
        try:
            noise, probabilities = model.encode(np.zeros((1, size, size, 3), np.uint8))
        except Exception as error:
            raise ModelError(f"{model.path}: encoding a photo failed ({type(error).__name__}: {error})") from None
        if not (np.isfinite(noise).all() and np.isfinite(probabilities).all()
                and ((probabilities >= 0) & (probabilities <= 1)).all()):
            raise ModelError(f"{model.path}: the encoder returned non-finite values or attribute probabilities "
                             "outside [0, 1]")


class ModelRegistry:
    """The models being served, by name, and which one answers when a query names none."""

    def __init__(self, models: dict[str, Model], default: str, ready: bool = False):
        self.models = dict(sorted(models.items()))
        self.default = default
        # True once every model has generated a face (and encoded a photo, where it can): what /readyz reports.
        self.ready = ready

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def encoders(self) -> list[str]:
        """The names of the models that can encode photos."""
        return [name for name, model in self.models.items() if model.can_encode]

    def get(self, name: str) -> Model:
        return self.models[name]


def _default_name(models_dir: Path, candidates: list[str], configured: str | None) -> str:
    if configured:
        return configured
    try:
        recorded = model_folder.read_default(models_dir)
    except model_folder.ManifestError as error:
        raise ModelError(str(error)) from None
    if recorded is not None:
        return recorded
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelError(f"no models in {models_dir}: export one there (python -m training export --run RUN "
                         f"--out {models_dir}/NAME --default) or set FACEGEN_MODELS_DIR")
    raise ModelError(f"{models_dir} holds several models ({', '.join(candidates)}) and no {DEFAULT_FILE} file: "
                     f"write the default's name into {models_dir / DEFAULT_FILE} or set FACEGEN_MODEL")


def model_folders(models_dir) -> list[str]:
    """The model folders' names in a models directory, sorted; ModelError if the directory does not exist."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ModelError(f"models directory {models_dir} does not exist (set FACEGEN_MODELS_DIR)")
    # Dot-folders are skipped: export stages its output in one before swapping it in.
    return sorted(p.name for p in models_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def default_model(models_dir, configured: str | None = None) -> str:
    """The name of the model a query naming none gets: ``configured`` (FACEGEN_MODEL), else the DEFAULT file's,
    else the only model; ModelError naming the problem when there is none or it is not there."""
    candidates = model_folders(models_dir)
    default = _default_name(Path(models_dir), candidates, configured)
    if default not in candidates:
        problem = "is not a valid model name" if not re.fullmatch(MODEL_NAME_PATTERN, default) else "was not found"
        raise ModelError(f"default model {default!r} {problem} in {models_dir} (a folder with {MANIFEST} and "
                         f"{SAVED_MODEL}); models there: {', '.join(candidates) or 'none'}")
    return default


def load_models(models_dir, default: str | None = None) -> ModelRegistry:
    """Load and warm up every model folder; the default must work, a broken extra model is logged and skipped."""
    models_dir = Path(models_dir)
    default = default_model(models_dir, default)
    candidates = model_folders(models_dir)
    models = {}
    for name in candidates:
        started = time.perf_counter()
        try:
            model = load_model(models_dir / name)
            warm_up(model)
            model.load_seconds = time.perf_counter() - started
        except ModelError:
            if name == default:
                raise
            log.exception("skipping model %s", name)
            continue
        models[name] = model
        log.info("loaded %r from %s", model, model.path)
    return ModelRegistry(models, default, ready=True)
