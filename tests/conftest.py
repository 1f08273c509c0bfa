"""Shared fixtures: a real exported tiny model (training.export.export_random_model), the app and its client.

The model is built once per test session by the project's own export code, so the service is tested against the
same kind of SavedModel + manifest that training produces, never against a hand-written stand-in.
"""

import os

# Quiet and lean TensorFlow for the test session; set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

TINY_MODEL = "tiny"
TINY_ATTRIBUTES = ("Male", "Eyeglasses", "Smiling")
TINY_RESOLUTION = 32
TINY_LATENT_SIZE = 16


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
def app(tiny_models_dir):
    from app import create_app

    flask_app = create_app({"FACEGEN_MODELS_DIR": str(tiny_models_dir), "TESTING": True})
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()
