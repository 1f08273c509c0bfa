"""Prometheus metrics and ``GET /metrics``.

Under gunicorn each worker is its own process, so when ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn.conf.py sets
it, and marks dead workers in ``child_exit``) prometheus_client writes every value to a per-process file there and
/metrics merges all workers' files with a MultiProcessCollector. Without it (tests, ``flask run``) the default
registry of this one process is served.

Labels stay bounded: the endpoint label is the Flask URL rule (``/api/face``, never the raw path with its query),
requests that match no rule are ``unmatched``, and status is the numeric code.
"""

import os
import time

from flask import Blueprint, Response, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from prometheus_client import multiprocess

UNMATCHED = "unmatched"

REQUESTS = Counter("facegen_http_requests_total", "HTTP requests answered, by endpoint (URL rule) and status.",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("facegen_http_request_duration_seconds", "Time from request start to response, by endpoint.",
                    ["endpoint", "status"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
BATCH_SIZE = Histogram("facegen_batch_size", "Faces per generator call made by the micro-batcher.", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64))
QUEUE_DEPTH = Gauge("facegen_batch_queue_depth", "Face requests waiting for the generator, summed over live workers.",
                    ["model"], multiprocess_mode="livesum")
CACHE_HITS = Counter("facegen_png_cache_hits_total", "Face PNGs answered from the in-process LRU cache.")
CACHE_MISSES = Counter("facegen_png_cache_misses_total", "Face PNGs that had to be generated.")
FACES = Counter("facegen_faces_generated_total", "Faces run through the generator (padding rows excluded).",
                ["model"])
MODEL_LOAD = Gauge("facegen_model_load_seconds", "Seconds to load and warm up each model at startup.", ["model"],
                   multiprocess_mode="max")
ENCODE_BATCH_SIZE = Histogram("facegen_encode_batch_size", "Uploaded photos per encoder call made by the "
                              "micro-batcher.", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64))
ENCODE_QUEUE_DEPTH = Gauge("facegen_encode_queue_depth", "Framed photos waiting for the encoder, summed over live "
                           "workers.", ["model"], multiprocess_mode="livesum")
PHOTOS_ENCODED = Counter("facegen_photos_encoded_total", "Uploaded photos run through the encoder (padding rows "
                         "excluded).", ["model"])
REJECTED = Counter("facegen_rejected_total", "Requests refused by back-pressure (queue full or wait timed out).",
                   ["model", "reason"])

metrics = Blueprint("metrics", __name__)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


@metrics.get("/metrics")
def scrape():
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    response = Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def _start_timer():
    g.facegen_started = time.perf_counter()


def _record(response):
    started = g.pop("facegen_started", None)
    endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    status = str(response.status_code)
    method = request.method if request.method in ("GET", "HEAD", "POST", "OPTIONS") else "other"
    REQUESTS.labels(endpoint, method, status).inc()
    if started is not None:
        LATENCY.labels(endpoint, status).observe(time.perf_counter() - started)
    return response


def init_app(app) -> None:
    """Register /metrics and the per-request timing hooks; record each loaded model's load time."""
    app.before_request(_start_timer)
    app.after_request(_record)
    app.register_blueprint(metrics)
    for model in app.extensions["facegen"].models.values():
        seconds = getattr(model, "load_seconds", None)
        if seconds is not None:
            MODEL_LOAD.labels(model.name).set(seconds)
