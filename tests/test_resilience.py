"""Resilience of the real entrypoint: ``gunicorn -c gunicorn.conf.py`` over TLS (trustme), loopback only, bounded.

CI runs the short mode. FACEGEN_LONG_TESTS=1 runs the long one (more fuzzing cases, a longer kill test):

    python -m pytest -q tests/test_resilience.py                        # short: about a minute
    FACEGEN_LONG_TESTS=1 python -m pytest -q tests/test_resilience.py   # long

- 5,000 face requests at concurrency 64: zero failures (seeds repeat after 2,500, so part is served hot);
- a worker SIGKILLed mid-load is replaced by the arbiter and fewer than 1% of requests fail;
- a missing or corrupt model folder: a clear startup error in the log, /readyz never 200, the master exits;
- oversized query strings (414 JSON from the app, 414 from gunicorn past its request-line limit) and long
  headers (431/400 from gunicorn) are refused before any generation;
- schemathesis fuzzes every operation of /openapi.json in-process (WSGI) and finds no 5xx (short: ~80 cases per
  operation, long: ~600; a few thousand in all).
"""

import os
import shutil
import signal
import threading
import time

import pytest
import requests

from tests.conftest import fuzz_for_server_errors
from tests.entrypoint import READY_MARKER, WORKERS, Gunicorn, tls  # noqa: F401 (tls: a fixture)

LONG = os.environ.get("FACEGEN_LONG_TESTS") == "1"


@pytest.fixture(scope="module")
def server(tiny_models_dir, tls, tmp_path_factory):
    running = Gunicorn(tiny_models_dir, tls, tmp_path_factory.mktemp("gunicorn") / "server.log")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def load(base, ca_file, total, concurrency, seed_of=lambda i: i, on_progress=None) -> dict:
    """``total`` GET /api/face requests from ``concurrency`` keep-alive clients; returns counts by outcome."""
    counter = iter(range(total))
    lock = threading.Lock()
    outcome = {"ok": 0, "failed": 0, "statuses": {}, "errors": []}

    def client():
        session = requests.Session()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            try:
                response = session.get(f"{base}/api/face", params={"seed": seed_of(index)}, verify=ca_file,
                                       timeout=60)
                good = response.status_code == 200 and response.content.startswith(b"\x89PNG")
                key = str(response.status_code)
            except requests.RequestException as error:
                session = requests.Session()
                good, key = False, type(error).__name__
            with lock:
                outcome["ok" if good else "failed"] += 1
                outcome["statuses"][key] = outcome["statuses"].get(key, 0) + 1
                if on_progress:
                    on_progress(outcome["ok"] + outcome["failed"])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return outcome


@pytest.mark.slow
def test_5000_requests_at_concurrency_64_without_a_failure(server):
    started = time.monotonic()
    outcome = load(server.base, server.ca_file, 5000, 64, seed_of=lambda i: i % 2500)
    elapsed = time.monotonic() - started
    assert outcome["failed"] == 0, outcome
    assert outcome["ok"] == 5000
    print(f"5000 requests at c=64 in {elapsed:.1f} s ({5000 / elapsed:.0f}/s)")
    metrics = requests.get(server.base + "/metrics", verify=server.ca_file, timeout=10).text
    # Merged over both workers' files: every one of those requests is counted, and batches did form.
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith('facegen_http_requests_total{endpoint="/api/face"') and 'status="200"' in line)
    assert counted >= 5000
    assert "facegen_batch_size_count" in metrics and "facegen_png_cache_hits_total" in metrics


@pytest.mark.slow
def test_oversized_query_is_refused_by_the_app_with_414_json(server):
    response = requests.get(server.base + "/api/face", params={"seed": "1", "attrs": "x" * 3000},
                            verify=server.ca_file, timeout=10)
    assert response.status_code == 414
    assert "too long" in response.json()["error"]


@pytest.mark.slow
def test_request_line_past_gunicorns_limit_is_refused(server):
    response = requests.get(server.base + "/api/face?seed=1&attrs=" + "x" * 6000, verify=server.ca_file, timeout=10)
    assert response.status_code in (400, 414)


@pytest.mark.slow
def test_long_header_is_refused_by_gunicorn(server):
    response = requests.get(server.base + "/api/face?seed=1", headers={"X-Long": "y" * 10000},
                            verify=server.ca_file, timeout=10)
    assert response.status_code in (400, 431)  # gunicorn 27 answers 431 Request Header Fields Too Large
    assert server.readyz() == 200


@pytest.mark.slow
def test_killed_worker_is_replaced_and_few_requests_fail(server):
    total = 3000 if LONG else 1500
    before = server.worker_pids()
    assert len(before) == WORKERS
    victim = sorted(before)[0]
    killed = threading.Event()

    def kill_at_a_third(done):
        if done >= total // 3 and not killed.is_set():
            killed.set()
            os.kill(victim, signal.SIGKILL)

    outcome = load(server.base, server.ca_file, total, 16, seed_of=lambda i: 10_000 + i, on_progress=kill_at_a_third)
    assert killed.is_set()
    assert outcome["failed"] < total * 0.01, outcome
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = server.worker_pids()
        if len(after) == WORKERS and victim not in after and server.log().count(READY_MARKER) >= WORKERS + 1:
            break
        time.sleep(0.2)
    assert victim not in after and len(after) == WORKERS, (before, after)
    assert server.readyz() == 200
    print(f"killed worker {victim} mid-load: {outcome}")


def _start_broken(models_dir, tls, tmp_path):
    broken = Gunicorn(models_dir, tls, tmp_path / "broken.log", workers=1, threads=2)
    statuses = []
    try:
        deadline = time.monotonic() + 90
        while broken.process.poll() is None and time.monotonic() < deadline:
            statuses.append(broken.readyz())
            time.sleep(0.2)
        assert broken.process.poll() is not None, "gunicorn kept running with a broken model"
    finally:
        broken.stop()
    assert 200 not in statuses
    assert broken.process.returncode != 0
    return broken.log()


@pytest.mark.slow
def test_missing_models_directory_never_becomes_ready(tls, tmp_path):
    log = _start_broken(tmp_path / "no-such-models", tls, tmp_path)
    assert "ModelError" in log and "does not exist" in log, log[-3000:]


@pytest.mark.slow
def test_corrupt_model_never_becomes_ready(tiny_models_dir, tls, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    (models / "tiny" / "saved_model.pb").write_bytes(b"this is not a protobuf")
    log = _start_broken(models, tls, tmp_path)
    assert "cannot load the SavedModel" in log, log[-3000:]


# --- property-based fuzzing of the API from its own OpenAPI document (in-process WSGI) --------------------------------

FUZZ_EXAMPLES = 600 if LONG else 80  # per operation; hypothesis stops early where an operation has few inputs


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_5xx(app):
    import schemathesis

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/api/face" for op in operations)
    cases, server_errors = fuzz_for_server_errors(operations, FUZZ_EXAMPLES)
    print(f"schemathesis: {cases} cases over {len(operations)} operations")
    assert not server_errors, server_errors[:10]
    assert cases >= len(operations) * 5
