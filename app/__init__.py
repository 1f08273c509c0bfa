"""facegen's web service: ``create_app()`` loads the models, warms them up, and returns a ready Flask app."""

import logging
import os
from pathlib import Path

from flask import Flask, request

from app.models import ModelError, load_models

REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# Longer query strings are refused before any parsing (every valid query is far shorter; 64 seeds fit in 800 bytes).
MAX_QUERY_BYTES = 2048

# Browser security headers on every answer (docs/DEPLOY.md). The service is HTTPS only, so browsers may keep to HTTPS
# for a year; nothing is to be sniffed, framed or told where the user came from. The gallery's CSP allows exactly
# what the page uses: its own script, stylesheet and API, its own images plus the data: URLs the edit panel shows
# (and its data: favicon) and blob: ones for downloads; no inline script or style, no plug-ins, no framing.
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors' predecessor, for older browsers
}
GALLERY_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# Images, JSON and errors load nothing themselves.
RESOURCE_CSP = "default-src 'none'; frame-ancestors 'none'"

__all__ = ["create_app", "ModelError"]


def create_app(config: dict | None = None) -> Flask:
    """Config keys (also read from the environment): FACEGEN_MODELS_DIR, FACEGEN_MODEL, FACEGEN_WARM_INVERSION ("1":
    warm the pti edit methods up in a background thread, app/edits.py).

    Raises ModelError if the default model is missing or broken: better no server than a half-working one.
    """
    app = Flask(__name__)
    app.config["FACEGEN_MODELS_DIR"] = os.environ.get("FACEGEN_MODELS_DIR") or str(REPO_MODELS_DIR)
    app.config["FACEGEN_MODEL"] = os.environ.get("FACEGEN_MODEL") or None
    # "1": warm the pti edit methods up in a background thread once ready (app/edits.py's warm_up_inverters), so the
    # first pti edit does not pay for loading and tracing them (15-18 s on two cores); gunicorn.conf.py turns it on
    # for the service, and off is the default so that a create_app() in a script or test stays light.
    app.config["FACEGEN_WARM_INVERSION"] = os.environ.get("FACEGEN_WARM_INVERSION", "").strip() == "1"
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    # Request bodies (uploaded photos, /api/encode and /api/edit) past this are refused with 413 by werkzeug itself,
    # whatever reads them; app/uploads.py refuses a photo past its own limit first, with its message.
    from app.uploads import MAX_UPLOAD_BYTES, MULTIPART_OVERHEAD_BYTES
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES
    app.config.update(config or {})

    # Loading includes one generated face per model, so the app returned here is ready.
    app.extensions["facegen"] = load_models(app.config["FACEGEN_MODELS_DIR"], app.config["FACEGEN_MODEL"])

    from app.api import api
    from app.errors import register_error_handlers
    from app.health import health
    from app.openapi import openapi
    from app.pages import pages

    from app import batcher, metrics
    from app.errors import ApiError

    register_error_handlers(app)

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy",
                                    GALLERY_CSP if response.mimetype == "text/html" else RESOURCE_CSP)
        return response

    @app.before_request
    def reject_oversized_query():
        if len(request.query_string) > MAX_QUERY_BYTES:
            raise ApiError(f"query string too long ({len(request.query_string)} bytes, at most {MAX_QUERY_BYTES})",
                           status=414)

    metrics.init_app(app)
    # C2PA signing, read from the environment now: a bad certificate or key stops the start, before any face.
    from facegen import provenance

    signer = provenance.configured_signer()
    logging.getLogger(__name__).info("C2PA Content Credentials: %s", f"signed by {signer.subject} ({signer.origin})"
                                     if signer else f"off (set {provenance.ENV_CERT} and {provenance.ENV_KEY})")
    batcher.init_app(app)  # micro-batchers + PNG cache for the faces, and the encoders; warms up every batch shape
    if app.extensions["facegen"].encoders:
        # The face detector is built and run once now, not on the first upload: ready means ready for photos too.
        from app.edits import warm_up_detector

        logging.getLogger(__name__).info("face detector warmed up in %.2f s", warm_up_detector())
    if app.config["FACEGEN_WARM_INVERSION"]:
        _start_inversion_warm_up(app)
    for blueprint in (api, health, openapi, pages):
        app.register_blueprint(blueprint)
    return app


def _start_inversion_warm_up(app: Flask) -> None:
    """The pti methods' warm-up (app/edits.py's warm_up_inverters) in a background thread: the worker serves faces
    meanwhile, and an inverted edit arriving before it ends waits for it rather than tracing its own graph."""
    import threading

    from app.edits import can_invert, warm_up_inverters

    models = [model for model in app.extensions["facegen"].models.values() if can_invert(model)]
    if not models:
        return
    log = logging.getLogger(__name__)

    def warm() -> None:
        try:
            log.info("pti edit methods warmed up in %.2f s (%s)", warm_up_inverters(models),
                     ", ".join(model.name for model in models))
        except Exception:  # the edits still work: they warm up on first use instead
            log.exception("warming up the pti edit methods failed")

    thread = threading.Thread(target=warm, name="facegen-warm-inversion", daemon=True)
    app.extensions["facegen_inversion_warm_up"] = thread
    thread.start()
