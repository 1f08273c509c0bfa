"""What a query's attributes mean, and how a seed draws the ones it leaves open: plain functions on NumPy values.

No HTTP and no TensorFlow: serving (``app``) calls these for every face, and the tools (``bench/``) measure them.

A query's constraints name attributes of one model: ``Male`` turns Male on, ``-Eyeglasses`` turns Eyeglasses off,
and every attribute not named is *open*. The open ones are drawn from the face's seed, from the same frozen legacy
``numpy.random.RandomState(seed)`` stream as the noise and after it (so the noise of a seed never depends on them):

- ``table`` sampling, when the manifest holds ``attribute_table`` (the training set's distinct attribute rows with
  their counts): one uniform number picks a whole training row, weighted by its count, among the rows that agree
  with every constraint. If no row does, it picks among the rows with the fewest disagreements, the constraints are
  kept over that row, and the face is marked ``nearest`` instead of ``exact``.
- ``independent`` sampling, for manifests without a table (models exported before it existed): one uniform number
  per attribute, each attribute on with its training frequency (``attribute_frequencies``); constraints override.

The seed rule lives here whole (``seed_noise``, then ``draw_attributes``; ``seed_face`` is the one function every
caller uses: the service, the card, the tools), and this module imports nothing of facegen: ``model_folder``
imports it to check a manifest's names and table.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

OFF = "-"  # the prefix that turns an attribute off: "-Eyeglasses"
TABLE, INDEPENDENT = "table", "independent"  # the two samplings
EXACT, NEAREST = "exact", "nearest"  # whether a table-sampled face is a training row
NAME = re.compile(r"[A-Za-z0-9_]+")  # what an attribute name may hold: names travel comma-separated in URLs
# A value (a 0/1 vector's entry, or the encoder's probability) at least this is "on": the service's headers, the
# edit's found vector, the card.
ON_THRESHOLD = 0.5

Constraints = tuple  # signed names in manifest order and spelling: ("Male", "-Eyeglasses"); () fixes nothing


class ConstraintError(ValueError):
    """A query's attributes that name no valid set of constraints; the message names the parameter and the problem."""

    def __init__(self, message: str, allowed: list | None = None):
        super().__init__(message)
        self.message = message
        self.allowed = allowed


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


# -- constraints ------------------------------------------------------------------------------------------------
def parse_constraints(raw: str, attributes: Sequence[str], parameter: str = "attrs", model: str = "this model",
                      elsewhere: Mapping[str, Sequence[str]] | None = None) -> Constraints:
    """'male, -EYEGLASSES' -> ('Male', '-Eyeglasses'): signed names in manifest order; '' -> () (nothing fixed).

    Names are case-insensitive and may come in any order; a name given twice the same way counts once. Raises
    ConstraintError for an empty name (``Male,,Smiling``, ``-``), more than one ``-``, a name with other characters,
    a name the model does not have (``elsewhere``: lower-case name -> the other models that have it, to say so), and
    an attribute both on and off (``Male,-Male``).
    """
    allowed = list(attributes)
    if raw.strip() == "":
        return ()
    by_lower = {a.lower(): a for a in attributes}
    wanted: dict[str, bool] = {}
    unknown: list[str] = []
    for position, item in enumerate((part.strip() for part in raw.split(",")), start=1):
        name = item[len(OFF):] if item.startswith(OFF) else item
        if not name:
            raise ConstraintError(f"{parameter}: empty attribute name (item {position} of {_show(raw)}); give names "
                                  f"separated by single commas, '-' before a name turns it off", allowed)
        if name.startswith(OFF):
            raise ConstraintError(f"{parameter}: {_show(item)} has more than one '-'; '-Name' turns Name off, "
                                  f"'Name' turns it on", allowed)
        if not NAME.fullmatch(name):
            raise ConstraintError(f"{parameter}: {_show(item)} is not an attribute name (letters, digits and '_', "
                                  f"with an optional leading '-')", allowed)
        if name.lower() not in by_lower:
            unknown.append(name)
            continue
        canonical, on = by_lower[name.lower()], not item.startswith(OFF)
        if wanted.get(canonical, on) != on:
            raise ConstraintError(f"{parameter}: {canonical!r} is asked both on and off ({canonical!r} and "
                                  f"'{OFF}{canonical}'); name it once", allowed)
        wanted[canonical] = on
    if unknown:
        shown = ", ".join(_show(u) for u in unknown[:5])
        if not allowed:
            raise ConstraintError(f"{parameter}: model {model!r} is unconditional and has no attributes, got {shown}",
                                  allowed)
        owners = sorted({m for u in unknown for m in (elsewhere or {}).get(u.lower(), ())})
        where = f" (attributes of model {', '.join(map(repr, owners))}, not of {model!r})" if owners else ""
        raise ConstraintError(f"{parameter}: unknown attribute {shown} for model {model!r}{where}; allowed: "
                              f"{', '.join(allowed)}", allowed)
    return tuple(("" if wanted[a] else OFF) + a for a in attributes if a in wanted)


def constraint_arrays(constraints: Constraints | None, attributes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Signed names (or None: nothing fixed) -> (fixed bool [A], values uint8 [A], meaningful where fixed).

    Plain names are on, so a tuple of the names that are on (the old spelling) still works.
    """
    index = {a: i for i, a in enumerate(attributes)}
    fixed = np.zeros(len(attributes), bool)
    values = np.zeros(len(attributes), np.uint8)
    for signed in constraints or ():
        off = signed.startswith(OFF)
        i = index[signed[len(OFF):] if off else signed]
        fixed[i], values[i] = True, 0 if off else 1
    return fixed, values


def is_on(values) -> np.ndarray:
    """bool, the shape of ``values``: where an attribute vector (0/1, pushed, or the encoder's probabilities) is on."""
    return np.asarray(values) >= ON_THRESHOLD


def on_names(vector, attributes: Sequence[str]) -> list[str]:
    """The names that are on, in manifest order: ``X-Attributes``."""
    return [a for a, on in zip(attributes, is_on(np.asarray(vector).reshape(-1))) if on]


def explicit(vector, attributes: Sequence[str]) -> str:
    """Every attribute, the off ones with '-': an ``attrs`` value that fixes this exact vector."""
    return ",".join(("" if on else OFF) + a for a, on in zip(attributes, is_on(np.asarray(vector).reshape(-1))))


# -- the table --------------------------------------------------------------------------------------------------
def table_problem(field, attribute_count: int) -> str | None:
    """What is wrong with a manifest's ``attribute_table`` (None: nothing), for facegen.model_folder's check."""
    if not isinstance(field, dict) or set(field) != {"rows", "counts"}:
        return 'must be {"rows": [...], "counts": [...]}'
    rows, counts = field["rows"], field["counts"]
    if not isinstance(rows, list) or not isinstance(counts, list) or len(rows) != len(counts):
        return "rows and counts must be lists of the same length"
    if not rows and attribute_count:
        return "has no rows (a training set has at least one attribute row)"
    pattern = re.compile(f"[01]{{{attribute_count}}}")
    for i, row in enumerate(rows):
        if not isinstance(row, str) or not pattern.fullmatch(row):
            return (f"row {i} must be a string of {attribute_count} '0'/'1' characters (one per attribute, in "
                    f"manifest order), not {_show(str(row))}")
    for i, count in enumerate(counts):
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            return f"count {i} must be a positive integer, not {_show(str(count))}"
    if len(set(rows)) != len(rows):
        return "rows must be distinct (each with its count)"
    return None


class AttributeTable:
    """A training set's distinct attribute rows (uint8 [R, A]) with their counts (int64 [R]), in manifest order."""

    def __init__(self, rows, counts):
        self.rows = np.asarray(rows, dtype=np.uint8)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.cumulative = np.cumsum(self.counts)  # integers below 2**53: exact in the float64 comparison
        self._keys = {row.tobytes() for row in self.rows}

    @classmethod
    def from_manifest(cls, field, attributes: Sequence[str]) -> "AttributeTable | None":
        """The manifest's ``attribute_table`` (checked: ValueError naming the problem), or None where there is none.

        An empty table of a model without attributes is no table: there is nothing to draw.
        """
        if field is None:
            return None
        problem = table_problem(field, len(attributes))
        if problem:
            raise ValueError(f"attribute_table {problem}")
        if not attributes:
            return None
        rows = np.frombuffer("".join(field["rows"]).encode("ascii"), np.uint8).reshape(-1, len(attributes)) - 48
        return cls(rows, field["counts"])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> int:
        return int(self.cumulative[-1])

    def contains(self, vector) -> bool:
        """Whether this 0/1 vector is one of the training rows."""
        return is_on(np.asarray(vector).reshape(-1)).astype(np.uint8).tobytes() in self._keys

    def pick(self, u: float, fixed, values) -> tuple[np.ndarray, bool]:
        """uniform u in [0, 1) -> (a training row weighted by count, True) among the rows agreeing with the
        constraints, else (one of the rows with fewest disagreements, False). The row is returned as it is: the
        caller keeps the constraints over it."""
        fixed = np.asarray(fixed, bool)
        if not fixed.any():
            candidates, cumulative, exact = None, self.cumulative, True
        else:
            disagreements = (self.rows[:, fixed] != np.asarray(values, np.uint8)[fixed]).sum(axis=1)
            fewest = disagreements.min()
            candidates = np.flatnonzero(disagreements == fewest)  # table order: most frequent first
            cumulative, exact = np.cumsum(self.counts[candidates]), fewest == 0
        i = int(np.searchsorted(cumulative, u * float(cumulative[-1]), side="right"))
        i = min(i, len(cumulative) - 1)  # u < 1 keeps i in range; this only guards a rounding edge
        return self.rows[i if candidates is None else candidates[i]], bool(exact)


# -- a seed's inputs --------------------------------------------------------------------------------------------
def seed_noise(seed: int, latent_size: int, psi: float = 1.0):
    """seed -> (the seed's stream, noise [latent_size] float32): the first latent_size normals, times psi.

    The legacy RandomState stream is frozen by NumPy's compatibility policy, so these numbers are the same on every
    platform and NumPy version. Attributes are drawn from the returned stream after the noise (draw_attributes), so
    the noise never depends on the attributes.
    """
    stream = np.random.RandomState(seed)
    return stream, stream.standard_normal(latent_size).astype(np.float32) * np.float32(psi)


def draw_attributes(stream: np.random.RandomState, fixed, values, frequencies,
                    table: AttributeTable | None) -> tuple[np.ndarray, str | None]:
    """The attributes of one face from ``stream`` (positioned after the noise): (float32 0/1 [A], matched).

    matched: EXACT or NEAREST with a table, None for independent draws (there is nothing to match against).
    """
    fixed = np.asarray(fixed, bool)
    values = np.asarray(values, np.uint8)
    if table is None:
        frequencies = np.asarray(frequencies, dtype=np.float64)
        drawn = (stream.random_sample(len(frequencies)) < frequencies).astype(np.uint8)
        return np.where(fixed, values, drawn).astype(np.float32), None
    row, exact = table.pick(stream.random_sample(), fixed, values)
    return np.where(fixed, values, row).astype(np.float32), EXACT if exact else NEAREST


def seed_face(seed: int, latent_size: int, psi: float, frequencies, table: AttributeTable | None,
              constraints: Constraints | None = None, attributes: Sequence[str] = ()):
    """seed + constraints -> (noise float32 [latent_size], attributes float32 [A], matched).

    The noise is ``seed_noise``'s (the stream's first latent_size normals, times psi); the attributes come after it
    from the same stream, by ``draw_attributes``. The one function that maps a seed to generator inputs.
    """
    stream, noise = seed_noise(seed, latent_size, psi)
    fixed, values = constraint_arrays(constraints, attributes) if constraints else (
        np.zeros(len(frequencies), bool), np.zeros(len(frequencies), np.uint8))
    vector, matched = draw_attributes(stream, fixed, values, frequencies, table)
    return noise, vector, matched
