"""Probes for orchestrators: /healthz says the process answers, /readyz that the models loaded and generated (and,
for models that can encode photos, that their encoders ran and the face detector is warm)."""

from flask import Blueprint, current_app, jsonify

health = Blueprint("health", __name__)


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@health.get("/healthz")
def healthz():
    return _no_store(jsonify({"status": "ok"}))


@health.get("/readyz")
def readyz():
    registry = current_app.extensions["facegen"]
    if not registry.ready:
        response = jsonify({"status": "not ready", "error": "models are not loaded and warmed up yet"})
        response.status_code = 503
        return _no_store(response)
    # Ready: every model loaded and generated a face, every encoder encoded a blank photo, and (when some model can
    # encode) the face detector is built and has run: create_app() does all of it before the app takes a request.
    return _no_store(jsonify({"status": "ready", "default": registry.default, "models": registry.names,
                              "encoders": registry.encoders}))
