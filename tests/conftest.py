"""Shared fixtures: real exported tiny models (training.export.export_random_model), the apps and their clients.

The models are built once per test session by the project's own export code, so the service is tested against the
same kind of SavedModel + manifest that training produces, never against a hand-written stand-in.

- ``tiny_models_dir`` / ``app`` / ``client``: one model, 'tiny', exported without an attribute table (as before
  the table existed): independent attribute draws.
- ``table_models_dir`` / ``table_app`` / ``table_client``: 'tiny-table' (the default), exported with the attribute
  table TABLE_ROWS stands for, beside a copy of 'tiny'.
- ``encoder_models_dir`` / ``encoder_app`` / ``encoder_client``: 'tiny-enc' (the default), exported with an
  (untrained) encoder, so it takes photos (/api/encode, /api/edit), beside a copy of 'tiny', which cannot.
- ``celeba_photo``: real portraits read at test time from the shared CelebA-HQ folder beside the repository (never
  copied into it; their licence is non-commercial research); tests that need one are skipped where it is absent.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Quiet and lean TensorFlow for the test session; set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# An edit's deadline (app/edits.py, 20 s) is for production; on a test machine shared with training runs a face
# detection alone has taken 20 s, so tests lift it (tests/test_edit_photo.py sets its own to test it).
os.environ.setdefault("FACEGEN_EDIT_DEADLINE_S", "600")

import facegen  # noqa: E402,F401  (before TensorFlow loads: it picks TensorFlow's CPU kernels, facegen/__init__.py)
import pytest  # noqa: E402

TINY_MODEL = "tiny"
TINY_ATTRIBUTES = ("Male", "Eyeglasses", "Smiling")
TINY_RESOLUTION = 32
TINY_LATENT_SIZE = 16

ENCODER_MODEL = "tiny-enc"
ENCODER_ATTRIBUTES = ("Male", "Eyeglasses", "Smiling", "Young")
CELEBA_HQ = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-hq-128" / "CelebA-HQ-img"

TABLE_MODEL = "tiny-table"
TABLE_ATTRIBUTES = ("Male", "Young", "Smiling", "Eyeglasses", "No_Beard")
# A made-up training set's attribute rows (in TABLE_ATTRIBUTES order) and how often each occurs. Like real faces it
# has holes: no bearded woman (Male off, No_Beard off), no young face with eyeglasses.
TABLE_ROWS = {"01101": 40, "01001": 25, "11101": 15, "11000": 12, "00101": 10, "10000": 8, "10110": 6,
              "11001": 5, "00011": 3}


def table_field() -> dict:
    """TABLE_ROWS as export writes it (facegen.model_folder.attribute_table of the expanded rows)."""
    from facegen.model_folder import attribute_table

    rows = [[int(c) for c in row] for row, count in TABLE_ROWS.items() for _ in range(count)]
    return attribute_table(rows)


def call_together(function, items) -> list:
    """function(item) for every item, each in its own thread, all released at once (so a batcher sees them
    together); results in item order."""
    barrier = threading.Barrier(len(items))

    def one(item):
        barrier.wait()
        return function(item)

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(one, items))


def fuzz_for_server_errors(operations, max_examples: int):
    """Schemathesis cases generated from each OpenAPI operation, sent in-process: (cases sent, the 5xx answers)."""
    from hypothesis import HealthCheck, given, settings

    cases, server_errors = [0], []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            response = case.call()
            cases[0] += 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} {case.query}: {response.status_code}")

        fuzz()
    return cases[0], server_errors


def _models_dir_beside_tiny(tmp_path_factory, tiny_models_dir, name: str, **export) -> Path:
    """A models directory holding ``name`` (exported with ``export``), the default, and a copy of 'tiny'."""
    import shutil

    from training.export import export_random_model

    models_dir = tmp_path_factory.mktemp(name)
    export_random_model(models_dir / name, name=name, resolution=TINY_RESOLUTION, latent_size=TINY_LATENT_SIZE,
                        **export)
    shutil.copytree(tiny_models_dir / TINY_MODEL, models_dir / TINY_MODEL)
    (models_dir / "DEFAULT").write_text(name + "\n")
    return models_dir


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A models directory holding one untrained exported model, 'tiny' (32 px, 3 attributes), and DEFAULT."""
    from training.export import export_random_model

    models_dir = tmp_path_factory.mktemp("models")
    export_random_model(models_dir / TINY_MODEL, name=TINY_MODEL, resolution=TINY_RESOLUTION,
                        latent_size=TINY_LATENT_SIZE, attributes=TINY_ATTRIBUTES, seed=0)
    (models_dir / "DEFAULT").write_text(TINY_MODEL + "\n")
    return models_dir


@pytest.fixture(scope="session")
def table_models_dir(tmp_path_factory, tiny_models_dir):
    """'tiny-table' (32 px, TABLE_ATTRIBUTES, sampled from TABLE_ROWS), the default, and a copy of 'tiny'."""
    return _models_dir_beside_tiny(tmp_path_factory, tiny_models_dir, TABLE_MODEL, attributes=TABLE_ATTRIBUTES,
                                   seed=1, attribute_table=table_field())


@pytest.fixture(scope="session")
def table_app(table_models_dir):
    from app import create_app

    return create_app({"FACEGEN_MODELS_DIR": str(table_models_dir), "TESTING": True})


@pytest.fixture
def table_client(table_app):
    return table_app.test_client()


@pytest.fixture(scope="session")
def app(tiny_models_dir):
    from app import create_app

    flask_app = create_app({"FACEGEN_MODELS_DIR": str(tiny_models_dir), "TESTING": True})
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def encoder_models_dir(tmp_path_factory, tiny_models_dir):
    """'tiny-enc' (32 px, ENCODER_ATTRIBUTES, with an untrained encoder and export's framing template), the default,
    and a copy of 'tiny' (no encoder)."""
    return _models_dir_beside_tiny(tmp_path_factory, tiny_models_dir, ENCODER_MODEL, attributes=ENCODER_ATTRIBUTES,
                                   seed=2, encoder=True)


@pytest.fixture(scope="session")
def encoder_app(encoder_models_dir):
    from app import create_app

    return create_app({"FACEGEN_MODELS_DIR": str(encoder_models_dir), "TESTING": True})


@pytest.fixture
def encoder_client(encoder_app):
    return encoder_app.test_client()


@pytest.fixture(scope="session")
def celeba_photo():
    """celeba_photo(n=0) -> the bytes of CelebA-HQ's n.jpg (128 px), read in place from the shared data folder."""
    if not (CELEBA_HQ / "0.jpg").is_file():
        pytest.skip(f"CelebA-HQ 128 px photos not found at {CELEBA_HQ} (the shared data folder beside the repository; "
                    "they are read there at test time, never copied into it)")
    return lambda number=0: (CELEBA_HQ / f"{number}.jpg").read_bytes()
