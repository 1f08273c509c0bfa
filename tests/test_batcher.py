"""The micro-batcher, the PNG cache and /metrics, against the real tiny exported model (no HTTP server)."""

import threading
import time

import numpy as np
import pytest

from app.batcher import FaceRenderer, MicroBatcher, Overloaded
from app.cache import PngCache, face_key
from app.faces import FaceRequest, render_png
from app.models import load_models
from tests.conftest import call_together


@pytest.fixture(scope="module")
def model(tiny_models_dir):
    registry = load_models(tiny_models_dir)
    return registry.get(registry.default)


@pytest.fixture(scope="module")
def registry(tiny_models_dir):
    return load_models(tiny_models_dir)


def test_concurrent_batched_faces_are_identical_to_sequential_ones(model):
    requests = [FaceRequest(model, seed) for seed in range(48)]
    requests += [FaceRequest(model, 7, ("Male", "Smiling")), FaceRequest(model, 7, (), 0.5),
                 FaceRequest(model, 9, None, 1.0, 64)]
    sequential = [render_png(r) for r in requests]  # one generator call per face, no batcher
    from app.faces import encode_face
    batcher = MicroBatcher(model, max_batch=16, wait_ms=20, queue_size=256, finish=encode_face)
    renderer = FaceRenderer.__new__(FaceRenderer)
    renderer.cache = PngCache(0)  # no caching: every face goes through a batch
    renderer.batchers = {model.name: batcher}
    batched = call_together(renderer.png, requests)
    assert batched == sequential
    assert batcher.largest_batch > 1, "concurrent requests were not batched"
    assert batcher.batches < len(requests)


def test_batches_form_under_concurrency_and_respect_max_batch(model):
    batcher = MicroBatcher(model, max_batch=8, wait_ms=50, queue_size=64)
    futures = [batcher.submit(FaceRequest(model, seed)) for seed in range(20)]
    images = [f.result(timeout=30) for f in futures]
    assert all(image.shape == (model.resolution, model.resolution, 3) for image in images)
    assert batcher.largest_batch == 8
    assert batcher.batches <= 4


def test_a_lone_client_skips_the_batching_window(model):
    """One request at a time: no wait for company that never comes (a 60 s window would time every request out)."""
    batcher = MicroBatcher(model, max_batch=8, wait_ms=60_000, queue_size=8, timeout_s=20)
    for seed in range(3):
        assert batcher.result(FaceRequest(model, seed)).shape == (model.resolution, model.resolution, 3)
    assert batcher.batches == 3 and batcher.largest_batch == 1


def test_full_queue_raises_overloaded_as_503(model):
    batcher = MicroBatcher(model, max_batch=1, wait_ms=0, queue_size=2)
    gate = threading.Event()
    original = model.generate

    def slow_generate(noise, attrs):
        gate.wait(10)
        return original(noise, attrs)

    model.generate = slow_generate  # instance attribute: only this test's calls are slowed
    try:
        first = batcher.submit(FaceRequest(model, 1))
        time.sleep(0.2)  # the worker has taken it and is blocked inside generate
        batcher.submit(FaceRequest(model, 2))
        batcher.submit(FaceRequest(model, 3))
        with pytest.raises(Overloaded) as refused:
            batcher.submit(FaceRequest(model, 4))
        assert refused.value.status == 503 and refused.value.retry_after >= 1
    finally:
        gate.set()
        del model.generate
    assert first.result(timeout=30).shape[0] == model.resolution


def test_wait_is_bounded_and_timed_out_requests_are_skipped(model):
    batcher = MicroBatcher(model, max_batch=1, wait_ms=0, queue_size=8, timeout_s=0.2)
    gate = threading.Event()
    original = model.generate
    calls = []  # seeds no other test uses: an earlier test's batcher may still be finishing its queue

    def slow_generate(noise, attrs):
        calls.append(float(noise[0, 0]))
        gate.wait(10)
        return original(noise, attrs)

    model.generate = slow_generate
    try:
        blocker = batcher.submit(FaceRequest(model, 9001))
        time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(Overloaded, match="did not answer"):
            batcher.pixels(FaceRequest(model, 9002))
        assert time.monotonic() - started < 2
    finally:
        gate.set()
    blocker.result(timeout=30)
    time.sleep(0.3)
    del model.generate
    from app.faces import face_inputs
    assert float(face_inputs(FaceRequest(model, 9002))[0][0]) not in calls, "the timed-out request was generated"
    # The worker lives on and serves the next request.
    assert batcher.pixels(FaceRequest(model, 9003), timeout_s=30).shape[0] == model.resolution


def test_generator_failure_reaches_every_waiter_and_the_worker_survives(model):
    batcher = MicroBatcher(model, max_batch=4, wait_ms=0, queue_size=8)
    model.generate = lambda noise, attrs: (_ for _ in ()).throw(RuntimeError("boom"))
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.pixels(FaceRequest(model, 1), timeout_s=30)
    finally:
        del model.generate
    assert batcher.pixels(FaceRequest(model, 1), timeout_s=30).shape[0] == model.resolution


def test_cache_is_bounded_by_bytes_and_evicts_least_recently_used():
    cache = PngCache(100)
    cache.put("a", b"x" * 40)
    cache.put("b", b"y" * 40)
    assert cache.get("a") == b"x" * 40  # a is now the most recent
    cache.put("c", b"z" * 40)  # over 100 bytes: b goes
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.bytes == 80 and len(cache) == 2
    cache.put("huge", b"h" * 101)  # larger than the whole cache: not stored, nothing evicted
    assert cache.get("huge") is None and len(cache) == 2
    assert cache.hits == 3 and cache.misses == 2


def test_cache_key_is_the_normalised_query(model):
    sampled = FaceRequest(model, 5)
    key = face_key(sampled)
    # Naming exactly the attributes the seed samples is the same face, so the same entry.
    from app.faces import resolve
    vector = resolve(model, 5).attributes
    spelled = tuple(a for a, on in zip(model.attributes, vector) if on)
    assert face_key(FaceRequest(model, 5, spelled)) == key
    assert face_key(FaceRequest(model, 5, spelled, 0.5)) != key
    assert face_key(FaceRequest(model, 5, spelled, 1.0, 64)) != key
    assert face_key(FaceRequest(model, 6)) != key


def test_finish_errors_reach_only_their_request(model):
    def finish(request, pixels):
        if request.seed == 2:
            raise ValueError("cannot encode")
        return request.seed

    batcher = MicroBatcher(model, max_batch=4, wait_ms=50, queue_size=8, finish=finish)
    futures = [batcher.submit(FaceRequest(model, seed)) for seed in (1, 2, 3)]
    assert futures[0].result(timeout=30) == 1 and futures[2].result(timeout=30) == 3
    with pytest.raises(ValueError, match="cannot encode"):
        futures[1].result(timeout=30)


def test_renderer_caches_pngs(registry):
    renderer = FaceRenderer(registry, cache=PngCache(1 << 20), max_batch=4, wait_ms=0)
    model = registry.get(registry.default)
    first = renderer.png(FaceRequest(model, 11))
    batches = renderer.batchers[model.name].batches
    assert renderer.png(FaceRequest(model, 11)) == first
    assert renderer.batchers[model.name].batches == batches
    assert renderer.cache.hits == 1 and renderer.cache.misses == 1


def test_face_endpoint_goes_through_the_batcher_and_metrics_count_it(app, client):
    response = client.get("/api/face?seed=123456")
    assert response.status_code == 200
    model = app.extensions["facegen"].get(app.extensions["facegen"].default)
    assert response.data == render_png(FaceRequest(model, 123456))
    client.get("/api/face?seed=123456")  # a cache hit
    client.get("/no/such/page/12345")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'facegen_http_requests_total{endpoint="/api/face",method="GET",status="200"}' in text
    assert 'endpoint="unmatched"' in text and "/no/such/page" not in text
    assert "facegen_batch_size_bucket" in text and "facegen_png_cache_hits_total" in text
    assert f'facegen_model_load_seconds{{model="{model.name}"}}' in text
    assert "facegen_faces_generated_total" in text and "facegen_batch_queue_depth" in text


def test_overloaded_is_a_503_json_with_retry_after(app):
    from flask import Flask

    from app.batcher import overloaded_response
    with Flask(__name__).test_request_context():
        response = overloaded_response(Overloaded("busy"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.get_json() == {"error": "busy"}


def test_oversized_query_is_refused_with_414_json(client):
    response = client.get("/api/face?seed=1&attrs=" + "a" * 3000)
    assert response.status_code == 414
    assert "too long" in response.get_json()["error"]


def test_generated_pixels_do_not_depend_on_batch_position(model):
    rng = np.random.RandomState(0)
    noise = rng.standard_normal((8, model.latent_size)).astype(np.float32)
    attrs = (rng.random_sample((8, len(model.attributes))) < 0.5).astype(np.float32)
    together = model.generate(noise, attrs)
    for row in range(8):
        assert np.array_equal(model.generate(noise[row:row + 1], attrs[row:row + 1])[0], together[row])


def test_grids_and_animations_go_through_the_micro_batcher(app, client):
    """Every generator call of the routes goes through the model's batcher: its warmed shapes, its bounded queue."""
    from tests.conftest import TINY_MODEL

    batcher = app.extensions["facegen_renderer"].batchers[TINY_MODEL]
    before = batcher.batches
    assert client.get("/api/faces?n=40&start=5").status_code == 200
    assert batcher.batches >= before + 3 and batcher.largest_batch <= batcher.max_batch  # 40 faces, 16 a call
    before = batcher.batches
    assert client.get("/api/interpolate?from=1&to=2&steps=20").status_code == 200
    assert batcher.batches >= before + 2


def test_render_is_the_workers_batch_call_and_refuses_more_than_max_batch(model):
    """generate's loop calls render directly: the same rows the queue gives, one call per batch, at most max_batch."""
    batcher = MicroBatcher(model, max_batch=4, wait_ms=0, queue_size=8)
    requests = [FaceRequest(model, seed) for seed in (11, 12, 13)]
    rows = batcher.render(requests)
    assert len(rows) == 3
    for request, row in zip(requests, rows):
        np.testing.assert_array_equal(row, batcher.pixels(request, timeout_s=30))
    with pytest.raises(ValueError, match="at most 4"):
        batcher.render([FaceRequest(model, seed) for seed in range(5)])
