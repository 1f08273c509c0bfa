"""The attribute rules (facegen/attributes.py) as plain functions: constraints, table and independent sampling.

No TensorFlow and no HTTP here; tests/test_api.py checks the same rules through the service.
"""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facegen import attributes, model_folder
from tests.conftest import TABLE_ATTRIBUTES, TABLE_ROWS, table_field


def independent_draw(seed, latent_size, frequencies, psi=1.0):
    """The seed rule for a model without a table, spelt out as the spec: the frozen legacy stream's first latent_size
    normals times psi, then one uniform per attribute against its frequency."""
    stream = np.random.RandomState(seed)
    noise = stream.standard_normal(latent_size).astype(np.float32) * np.float32(psi)
    return noise, (stream.random_sample(len(frequencies)) < np.asarray(frequencies)).astype(np.float32)

REPO = Path(__file__).resolve().parents[1]
NAMES = TABLE_ATTRIBUTES
LATENT = 16
FREQUENCIES = [0.4, 0.7, 0.5, 0.1, 0.8]


@pytest.fixture(scope="module")
def table():
    return attributes.AttributeTable.from_manifest(table_field(), NAMES)


def face(seed, table, constraints=None, psi=1.0):
    return attributes.seed_face(seed, LATENT, psi, FREQUENCIES, table, constraints, NAMES)


def row_string(vector) -> str:
    return "".join("1" if v >= 0.5 else "0" for v in vector)


def agrees(vector, constraints) -> bool:
    fixed, values = attributes.constraint_arrays(constraints, NAMES)
    return bool(np.all(np.asarray(vector)[fixed] == values[fixed]))


# ---------------------------------------------------------------------------------------------- constraints


def test_constraints_are_signed_names_in_manifest_order_case_insensitive():
    parse = attributes.parse_constraints
    assert parse("smiling, -MALE", NAMES) == ("-Male", "Smiling")
    assert parse("Smiling,smiling", NAMES) == ("Smiling",)  # the same thing twice counts once
    assert parse("", NAMES) == () and parse("  ", NAMES) == ()
    assert parse(" -no_beard ", NAMES) == ("-No_Beard",)


@pytest.mark.parametrize("raw, problem", [
    ("Wings", "unknown attribute 'Wings'"),
    ("Male,Wings,Tail", "unknown attribute 'Wings', 'Tail'"),
    ("--Male", "more than one '-'"),
    ("Male,-male", "'Male' is asked both on and off"),
    ("-Smiling,Male,SMILING", "'Smiling' is asked both on and off"),
    ("Male,,Smiling", "empty attribute name (item 2"),
    ("Male,", "empty attribute name (item 2"),
    (",Male", "empty attribute name (item 1"),
    ("-", "empty attribute name (item 1"),
    ("Male,- ", "empty attribute name (item 2"),
    ("Ma le", "is not an attribute name"),
    ("%2BMale", "is not an attribute name"),
    ("Male;Smiling", "is not an attribute name"),
])
def test_bad_constraints_name_the_problem(raw, problem):
    with pytest.raises(attributes.ConstraintError) as raised:
        attributes.parse_constraints(raw, NAMES, "attrs", "m")
    assert problem in raised.value.message and raised.value.message.startswith("attrs: ")
    assert raised.value.allowed == list(NAMES)


def test_another_models_attribute_is_named_as_such():
    with pytest.raises(attributes.ConstraintError) as raised:
        attributes.parse_constraints("Male,Bald", NAMES, "to_attrs", "m", {"bald": ["celeba", "other"]})
    message = raised.value.message
    assert message.startswith("to_attrs: unknown attribute 'Bald' for model 'm'")
    assert "attributes of model 'celeba', 'other', not of 'm'" in message
    with pytest.raises(attributes.ConstraintError, match="unconditional"):
        attributes.parse_constraints("Male", (), "attrs", "u")
    assert attributes.parse_constraints("", (), "attrs", "u") == ()


def test_explicit_form_fixes_every_attribute():
    vector = np.array([1, 0, 1, 0, 1], np.float32)
    assert attributes.explicit(vector, NAMES) == "Male,-Young,Smiling,-Eyeglasses,No_Beard"
    assert attributes.on_names(vector, NAMES) == ["Male", "Smiling", "No_Beard"]
    constraints = attributes.parse_constraints(attributes.explicit(vector, NAMES), NAMES)
    fixed, values = attributes.constraint_arrays(constraints, NAMES)
    assert fixed.all() and values.tolist() == [1, 0, 1, 0, 1]


# -------------------------------------------------------------------------------------------------- the table


def test_table_reads_the_manifest_field(table):
    assert len(table) == len(TABLE_ROWS) and table.total == sum(TABLE_ROWS.values())
    assert {row_string(r): int(c) for r, c in zip(table.rows, table.counts)} == TABLE_ROWS
    assert table.contains([0, 1, 1, 0, 1]) and not table.contains([0, 1, 1, 0, 0])
    assert attributes.AttributeTable.from_manifest(None, NAMES) is None
    assert attributes.AttributeTable.from_manifest({"rows": [], "counts": []}, ()) is None  # unconditional


@pytest.mark.parametrize("field, problem", [
    ([], "must be {"), ({"rows": ["01101"]}, "must be {"), ({"rows": ["01101"], "counts": [1, 2]}, "same length"),
    ({"rows": [], "counts": []}, "no rows"), ({"rows": ["0110"], "counts": [1]}, "row 0 must be a string of 5"),
    ({"rows": ["01101", "0110x"], "counts": [1, 1]}, "row 1"), ({"rows": [11010], "counts": [1]}, "row 0"),
    ({"rows": ["01101"], "counts": [0]}, "count 0 must be a positive integer"),
    ({"rows": ["01101"], "counts": [1.5]}, "count 0"), ({"rows": ["01101"], "counts": [True]}, "count 0"),
    ({"rows": ["01101", "01101"], "counts": [1, 2]}, "distinct"),
])
def test_a_malformed_table_is_a_clear_manifest_error(tmp_path, field, problem):
    assert problem in attributes.table_problem(field, len(NAMES))
    manifest = model_folder.build_manifest(name="m", resolution=64, latent_size=8, attributes=NAMES,
                                           architecture="facegen", parameters=10, created="x")
    manifest["attribute_table"] = field
    (tmp_path / model_folder.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(model_folder.ManifestError) as raised:
        model_folder.read_manifest(tmp_path)
    message = str(raised.value)
    assert str(tmp_path) in message and "attribute_table" in message and problem in message, message


def test_a_good_table_passes_validation():
    assert attributes.table_problem(table_field(), len(NAMES)) is None


def test_no_constraints_draw_a_training_row_weighted_by_its_count(table):
    drawn = Counter(row_string(face(seed, table)[1]) for seed in range(6000))
    assert set(drawn) <= set(TABLE_ROWS)
    total = sum(TABLE_ROWS.values())
    for row, count in TABLE_ROWS.items():  # binomial: 4.5 standard deviations
        expected = 6000 * count / total
        assert abs(drawn[row] - expected) <= 4.5 * np.sqrt(expected) + 1, (row, drawn[row], expected)


def test_constraints_draw_from_the_agreeing_rows_by_count(table):
    # Smiling on, Male off: 01101 (40) and 00101 (10) are the only agreeing rows.
    drawn = Counter(row_string(face(seed, table, ("-Male", "Smiling"))[1]) for seed in range(3000))
    assert set(drawn) == {"01101", "00101"}
    assert abs(drawn["01101"] / 3000 - 0.8) < 0.04
    assert all(face(seed, table, ("-Male", "Smiling"))[2] == attributes.EXACT for seed in range(50))


@st.composite
def constraint_sets(draw):
    chosen = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    return tuple(("" if draw(st.booleans()) else "-") + name for name in chosen)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), constraints=constraint_sets())
def test_a_sampled_row_is_a_training_row_whenever_one_agrees(seed, constraints):
    table = attributes.AttributeTable.from_manifest(table_field(), NAMES)
    constraints = attributes.parse_constraints(",".join(constraints), NAMES)  # canonical order
    noise, vector, matched = face(seed, table, constraints)
    assert agrees(vector, constraints)  # the named ones are always kept
    possible = any(agrees([int(c) for c in row], constraints) for row in TABLE_ROWS)
    if possible:
        assert row_string(vector) in TABLE_ROWS and matched == attributes.EXACT
    else:
        assert row_string(vector) not in TABLE_ROWS and matched == attributes.NEAREST
    # The noise is the seed rule's, whatever the attributes: it is drawn first.
    expected_noise, _ = independent_draw(seed, LATENT, FREQUENCIES)
    np.testing.assert_array_equal(noise, expected_noise)


def test_no_agreeing_row_takes_the_rest_from_the_nearest_rows(table):
    # A bearded woman: no row has Male off and No_Beard off. Every row disagrees once (women have no beard, the
    # bearded are men), so the open attributes come from any row, and the constraints are kept.
    constraints = ("-Male", "-No_Beard")
    seen = set()
    for seed in range(400):
        _, vector, matched = face(seed, table, constraints)
        assert matched == attributes.NEAREST and vector[0] == 0 and vector[4] == 0
        seen.add(row_string(vector)[1:4])
    assert seen == {row[1:4] for row in TABLE_ROWS}
    # Young with eyeglasses and a beard: one disagreement at best, and only 11000 (young bearded man, no glasses)
    # and 10110 (older man with glasses and beard) reach it, so Male and Smiling come from one of those two rows.
    constraints = ("Young", "Eyeglasses", "-No_Beard")
    for seed in range(200):
        _, vector, matched = face(seed, table, constraints)
        assert matched == attributes.NEAREST and row_string(vector) in {"11010", "11110"}


def test_draws_are_deterministic_and_psi_only_scales_the_noise(table):
    for seed in (0, 1, 4294967295):
        first, second = face(seed, table, ("Smiling",)), face(seed, table, ("Smiling",))
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])
        half = face(seed, table, ("Smiling",), psi=0.5)
        np.testing.assert_array_equal(half[1], first[1])
        np.testing.assert_array_equal(half[0], first[0] * np.float32(0.5))


def test_the_explicit_form_reproduces_the_vector(table):
    for seed in range(100):
        for constraints in (None, ("Smiling",), ("-Male", "-No_Beard")):
            _, vector, matched = face(seed, table, constraints)
            again = face(seed, table, attributes.parse_constraints(attributes.explicit(vector, NAMES), NAMES))
            np.testing.assert_array_equal(again[1], vector)
            assert again[2] == matched  # exact iff the vector is a training row, whichever way it was asked


# ------------------------------------------------------------------------------------------- no table: as before


def test_without_a_table_the_draw_is_the_contracts_independent_one():
    for seed in range(300):
        noise, vector, matched = face(seed, None)
        expected_noise, expected = independent_draw(seed, LATENT, FREQUENCIES)
        np.testing.assert_array_equal(noise, expected_noise)
        np.testing.assert_array_equal(vector, expected)
        assert matched is None
        # Constraints override their attributes; the open ones are the same independent draws.
        _, constrained, _ = face(seed, None, ("Male", "-Smiling"))
        assert constrained[0] == 1 and constrained[2] == 0
        np.testing.assert_array_equal(constrained[[1, 3, 4]], expected[[1, 3, 4]])


# ------------------------------------------------------------------------------------------------- processes

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from facegen import attributes
from tests.conftest import TABLE_ATTRIBUTES, table_field
table = attributes.AttributeTable.from_manifest(table_field(), TABLE_ATTRIBUTES)
out = []
for seed, constraints in json.loads(sys.argv[2]):
    noise, vector, matched = attributes.seed_face(seed, 16, 1.0, [0.5] * 5, table, tuple(constraints),
                                                  TABLE_ATTRIBUTES)
    out.append([noise.tobytes().hex(), attributes.explicit(vector, TABLE_ATTRIBUTES), matched])
print("RESULT " + json.dumps(out))
"""


def test_seeded_draws_are_the_same_in_another_process():
    table = attributes.AttributeTable.from_manifest(table_field(), NAMES)
    queries = [[seed, list(c)] for seed in (0, 7, 123456, 4294967295) for c in ((), ("Smiling",), ("-Male", "-No_Beard"))]
    here = []
    for seed, constraints in queries:
        noise, vector, matched = attributes.seed_face(seed, 16, 1.0, [0.5] * 5, table, tuple(constraints), NAMES)
        here.append([noise.tobytes().hex(), attributes.explicit(vector, NAMES), matched])
    result = subprocess.run([sys.executable, "-c", CHILD, str(REPO), json.dumps(queries)], capture_output=True,
                            text=True, timeout=120, cwd=str(REPO))
    assert result.returncode == 0, result.stderr[-2000:]
    there = json.loads([line for line in result.stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    assert there == here
