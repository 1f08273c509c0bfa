"""Query parameters: one declaration per parameter, used both to validate requests and to write /openapi.json.

Parsers take raw strings and raise :class:`ApiError` naming the parameter, the problem and the allowed values, so a
bad query is always a 4xx JSON answer. Nothing here needs Flask.
"""

import math
import re
from dataclasses import dataclass, field

from typing import TYPE_CHECKING, Sequence

from app import limits
from app.errors import ApiError
from facegen import attributes, edit_methods

if TYPE_CHECKING:
    from app.models import Model


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict
    description: str
    example: object = None
    extra: dict = field(default_factory=dict)


SEED_SCHEMA = {"type": "integer", "minimum": limits.SEED_MIN, "maximum": limits.SEED_MAX}
SEED_RANGE = f"an integer from {limits.SEED_MIN} to {limits.SEED_MAX}"

MODEL = Param("model", {"type": "string", "pattern": f"^{limits.MODEL_NAME_PATTERN}$"},
              "Model name (see /api/models). Default: the server's default model.")
SEED = Param("seed", SEED_SCHEMA, "Seed of the face. Absent: a random seed, returned in the X-Seed header "
             "(and the response is then not cacheable).", 42)
ATTRS = Param("attrs", {"type": "string"},
              "Comma-separated constraints on the model's attributes (see /api/models), case-insensitive, any order: "
              "`Name` turns an attribute on, `-Name` turns it off. The attributes not named are drawn from the seed: "
              "with table sampling, a whole attribute row of the training set that agrees with the constraints, "
              "weighted by how often it occurs (if none agrees, the nearest rows, and X-Attributes-Matched says "
              "`nearest`); with independent sampling (models exported without a table), each from its training "
              "frequency. Absent or empty: nothing fixed. X-Attributes-Explicit gives a value that fixes every "
              "attribute of the face served.", "Male,-Eyeglasses,Smiling")
PSI = Param("psi", {"type": "number", "exclusiveMinimum": 0, "maximum": limits.PSI_MAX,
                    "default": limits.DEFAULT_PSI},
            "Truncation: the latent vector is scaled by psi; smaller is more typical, less varied.", 0.7)
SIZE = Param("size", {"type": "integer", "enum": list(limits.SIZES)},
             "Output width and height in pixels (Lanczos resampling). Also allowed: the model's own resolution, "
             "the default.", 256)
CELL_SIZE = Param("size", {"type": "integer", "enum": [s for s in limits.SIZES if s <= limits.MAX_CELL_SIZE]},
                  f"Width and height of each face in pixels, at most {limits.MAX_CELL_SIZE}. Also allowed: the "
                  "model's own resolution (if not larger), the default.", 64)
SEEDS = Param("seeds", {"type": "string"},
              f"Comma-separated seeds, 1 to {limits.MAX_FACES} of them, each {SEED_RANGE}. Not with n/start.",
              "1,2,3")
COUNT = Param("n", {"type": "integer", "minimum": 1, "maximum": limits.MAX_FACES, "default": limits.DEFAULT_FACES},
              "Number of faces, seeds start, start+1, ... Not with seeds.", 16)
START = Param("start", SEED_SCHEMA, "First seed when n is used. Absent: random, returned in X-Seed "
              "(and the response is then not cacheable). Seeds past the maximum wrap to 0.", 100)
GRID_FORMAT = Param("format", {"type": "string", "enum": ["png", "json"], "default": "png"},
                    "png: one grid image, rows of ceil(sqrt(count)) faces. json: a list of seeds and face URLs.")
FROM = Param("from", SEED_SCHEMA, "Seed of the first frame.", 1, {"required": True})
TO = Param("to", SEED_SCHEMA, "Seed of the last frame. Default: the same as from (then vary the attributes).", 2)
STEPS = Param("steps", {"type": "integer", "minimum": limits.MIN_STEPS, "maximum": limits.MAX_STEPS,
                        "default": limits.DEFAULT_STEPS},
              "Number of frames, both ends included. Consecutive identical frames are merged by the encoder.", 16)
FROM_ATTRS = Param("from_attrs", dict(ATTRS.schema),
                   "Constraints of the first frame (like attrs, which they override for that end).", "Male,-Smiling")
TO_ATTRS = Param("to_attrs", dict(ATTRS.schema),
                 "Constraints of the last frame (like attrs, which they override for that end).", "Male,Smiling")
ANIMATION_FORMAT = Param("format", {"type": "string", "enum": ["gif", "webp"], "default": "gif"},
                         "Animation format.")

ENCODING_MODEL = Param("model", MODEL.schema, "Model name (see /api/models: `can_encode`). Default: the server's "
                       "default model. A model whose export has no encoder is refused (400, naming the models that "
                       "can encode).")
EDIT_ATTRS = Param("attrs", {"type": "string"},
                   "Comma-separated changes to the attributes the encoder found, case-insensitive, any order: `Name` "
                   "turns an attribute on, `-Name` turns it off; every attribute not named stays as found (on where "
                   f"the encoder's probability is at least {attributes.ON_THRESHOLD}). Absent or empty: the photo "
                   "rebuilt unchanged.",
                   "Smiling,-Eyeglasses")
EDIT_FORMAT = Param("format", {"type": "string", "enum": ["png", "json"], "default": "png"},
                    "png: the image chosen by view. json: the encoder's findings and the images framed, rebuilt, "
                    "edited and photo as PNG data URLs; view is not allowed then.")
VIEW = Param("view", {"type": "string", "enum": ["edited", "rebuilt", "framed", "strip", "photo"],
                      "default": "edited"},
             "edited: the face with the changes; rebuilt: the face as the encoder found it (no changes); framed: the "
             "photo's face as the encoder saw it (detected, aligned, resized); strip: framed, rebuilt and edited "
             "side by side in one PNG three faces wide; photo: the whole upright photo at its own size (longer side "
             "at most 1024 px) with the edited face put back in place (size does not apply).")
METHOD = Param("method", {"type": "string", "enum": list(edit_methods.SERVED)},
               "How the edited face is made: " + "; ".join(f"{name}: {edit_methods.METHODS[name].summary}"
                                                            for name in edit_methods.SERVED) +
               f". Absent: {edit_methods.DEFAULT} where the model has its float signature, else "
               f"{edit_methods.FALLBACK} (/api/models lists each model's edit_methods and edit_method).")

FACE_PARAMS = (MODEL, SEED, ATTRS, PSI, SIZE)
GRID_PARAMS = (MODEL, SEEDS, COUNT, START, ATTRS, PSI, CELL_SIZE, GRID_FORMAT)
INTERPOLATE_PARAMS = (MODEL, FROM, TO, STEPS, ATTRS, FROM_ATTRS, TO_ATTRS, PSI, CELL_SIZE, ANIMATION_FORMAT)
ENCODE_PARAMS = (ENCODING_MODEL,)
EDIT_PARAMS = (ENCODING_MODEL, EDIT_ATTRS, SIZE, EDIT_FORMAT, VIEW, METHOD)
GALLERY_PARAMS = (MODEL, Param("seed", SEED_SCHEMA, "First seed shown."),
                  Param("attrs", ATTRS.schema, "Attribute toggles preset on (`Name`) or off (`-Name`); the rest are "
                        "'any'.", "Male,-Smiling"), PSI)


def _show(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def single_values(args: dict[str, list[str]], params) -> dict[str, str]:
    """Reject unknown and repeated parameters (a typo like `atrs` must not silently mean "no attributes")."""
    allowed = [p.name for p in params]
    values = {}
    for name, raw_values in args.items():
        if name not in allowed:
            raise ApiError(f"unknown query parameter {_show(name)}; allowed: {', '.join(allowed)}", allowed=allowed)
        if len(raw_values) != 1:
            raise ApiError(f"query parameter {name!r} given {len(raw_values)} times; give it once")
        values[name] = raw_values[0]
    return values


def parse_int(raw: str, name: str, low: int, high: int) -> int:
    # Digits only: no sign, spaces, underscores or exponents; the length check stops huge numbers early.
    if not re.fullmatch(r"[0-9]{1,20}", raw):
        raise ApiError(f"{name} must be an integer from {low} to {high}, got {_show(raw)}")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(f"{name} must be an integer from {low} to {high}, got {value}")
    return value


def parse_seed(raw: str, name: str = "seed") -> int:
    return parse_int(raw, name, limits.SEED_MIN, limits.SEED_MAX)


def parse_seed_list(raw: str) -> list[int]:
    parts = raw.split(",")
    if len(parts) > limits.MAX_FACES:
        raise ApiError(f"seeds: at most {limits.MAX_FACES} seeds, got {len(parts)}")
    return [parse_seed(part.strip(), "each seed in seeds") for part in parts]


def parse_psi(raw: str) -> float:
    # A plain decimal number: float() alone would also take 'nan', 'inf' and '1_0'.
    if not re.fullmatch(r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]{1,3})?", raw) or not math.isfinite(float(raw)):
        raise ApiError(f"psi must be a number with 0 < psi <= {limits.PSI_MAX}, got {_show(raw)}")
    psi = float(raw)
    if not 0 < psi <= limits.PSI_MAX:
        raise ApiError(f"psi must be a number with 0 < psi <= {limits.PSI_MAX}, got {psi}")
    return psi


def allowed_sizes(resolution: int, largest: int | None = None) -> list[int]:
    sizes = sorted(set(limits.SIZES) | {resolution})
    return [s for s in sizes if largest is None or s <= largest] or [min(sizes)]


def parse_size(raw: str | None, resolution: int, largest: int | None = None) -> int:
    """Output size in pixels; absent: the model's own resolution (or the largest allowed, if that is smaller)."""
    sizes = allowed_sizes(resolution, largest)
    if raw is None:
        return resolution if resolution in sizes else max(sizes)
    if not re.fullmatch(r"[0-9]{1,6}", raw) or int(raw) not in sizes:
        raise ApiError(f"size must be one of {', '.join(map(str, sizes))} for this model, got {_show(raw)}",
                       allowed=sizes)
    return int(raw)


def parse_choice(raw: str | None, name: str, choices: list[str]) -> str:
    if raw is None:
        return choices[0]
    if raw.lower() not in choices:
        raise ApiError(f"{name} must be one of {', '.join(choices)}, got {_show(raw)}", allowed=choices)
    return raw.lower()


def parse_model(raw: str | None, registry):
    """Model name -> loaded Model. Path-like names are refused before any lookup; both errors list the models."""
    if raw is None:
        return registry.get(registry.default)
    if not re.fullmatch(limits.MODEL_NAME_PATTERN, raw):
        raise ApiError(f"model: {_show(raw)} is not a model name (letters, digits, '.', '_' and '-' only, no "
                       f"leading '.'); models: {', '.join(registry.names)}", allowed=registry.names)
    if raw not in registry.models:
        raise ApiError(f"unknown model {_show(raw)}; models: {', '.join(registry.names)}", status=404,
                       allowed=registry.names)
    return registry.get(raw)


def parse_attrs(raw: str | None, model: "Model", name: str = "attrs",
                others: Sequence["Model"] = ()) -> tuple[str, ...] | None:
    """'male, -SMILING' -> ('Male', '-Smiling') in manifest order; None stays None; '' fixes nothing.

    The rules and their errors are facegen.attributes.parse_constraints'; ``others`` (the other models served) lets
    an error say when a name belongs to another model.
    """
    if raw is None:
        return None
    elsewhere: dict[str, list[str]] = {}
    for other in others:
        if other is not model:
            for attribute in other.attributes:
                elsewhere.setdefault(attribute.lower(), []).append(other.name)
    try:
        return attributes.parse_constraints(raw, model.attributes, name, model.name, elsewhere)
    except attributes.ConstraintError as error:
        raise ApiError(error.message, allowed=error.allowed) from None
