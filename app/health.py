"""Probes for orchestrators: /healthz says the process answers, /readyz that the models loaded and generated."""

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
    return _no_store(jsonify({"status": "ready", "default": registry.default, "models": registry.names}))
