"""facegen's web service: ``create_app()`` loads the models, warms them up, and returns a ready Flask app."""

import os
from pathlib import Path

from flask import Flask

from app.models import ModelError, load_models

REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

__all__ = ["create_app", "ModelError"]


def create_app(config: dict | None = None) -> Flask:
    """Config keys (also read from the environment): FACEGEN_MODELS_DIR, FACEGEN_MODEL.

    Raises ModelError if the default model is missing or broken: better no server than a half-working one.
    """
    app = Flask(__name__)
    app.config["FACEGEN_MODELS_DIR"] = os.environ.get("FACEGEN_MODELS_DIR") or str(REPO_MODELS_DIR)
    app.config["FACEGEN_MODEL"] = os.environ.get("FACEGEN_MODEL") or None
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    app.config.update(config or {})

    # Loading includes one generated face per model, so the app returned here is ready.
    app.extensions["facegen"] = load_models(app.config["FACEGEN_MODELS_DIR"], app.config["FACEGEN_MODEL"])

    from app.api import api
    from app.errors import register_error_handlers
    from app.health import health
    from app.openapi import openapi
    from app.pages import pages

    register_error_handlers(app)
    for blueprint in (api, health, openapi, pages):
        app.register_blueprint(blueprint)
    return app
