"""Issue 18: the service keeps serving when clients misbehave.

In-process (fast): admission control for heavy work (app/admission.py), security headers, upload decoding budget.
Through the production entrypoint, ``gunicorn -c gunicorn.conf.py`` over TLS on loopback (``@pytest.mark.slow``):
stalled connections, concurrent large uploads and the workers' memory, gunicorn's own errors as JSON, the self-signed
certificate and metric folders removed at stop, the key and certificate loaded once.
"""

import threading
import time

import pytest

from app import admission


@pytest.fixture
def admission_env(monkeypatch):
    """Set FACEGEN_ADMIT_* for one test; the gates are rebuilt from it before and after."""
    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        admission.reset()
    yield set_env
    monkeypatch.undo()
    admission.reset()


# --- admission control -------------------------------------------------------------------------------------------------

def _hold(work_class, entered: threading.Event, release: threading.Event, outcome: list):
    try:
        with admission.admit(work_class):
            entered.set()
            release.wait(30)
        outcome.append("ran")
    except admission.Busy as error:
        entered.set()
        outcome.append(error)


def test_gate_runs_limit_queues_queue_and_refuses_the_rest(admission_env):
    admission_env(FACEGEN_ADMIT_GRID=1, FACEGEN_ADMIT_GRID_QUEUE=1, FACEGEN_ADMIT_WAIT_S=20)
    release, outcomes = threading.Event(), [[], [], []]
    first, second = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=("grid", first, release, outcomes[0]))
    holder.start()
    assert first.wait(10)
    waiter = threading.Thread(target=_hold, args=("grid", second, release, outcomes[1]))
    waiter.start()
    deadline = time.monotonic() + 10
    while admission.gate("grid").waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert admission.gate("grid").waiting == 1 and admission.gate("grid").running == 1
    # Limit 1 running and queue 1 waiting are both taken: the third is refused at once, without waiting.
    with pytest.raises(admission.Busy) as refused:
        with admission.admit("grid"):
            pass
    assert refused.value.status == 503 and refused.value.retry_after == admission.RETRY_AFTER_S
    assert "grid" in refused.value.message
    release.set()
    holder.join(10)
    waiter.join(10)
    assert outcomes[0] == ["ran"] and outcomes[1] == ["ran"]  # the waiter got the slot when the holder left
    assert admission.gate("grid").running == 0 and admission.gate("grid").waiting == 0


def test_a_waiter_gives_up_after_the_wait(admission_env):
    admission_env(FACEGEN_ADMIT_UPLOAD=1, FACEGEN_ADMIT_UPLOAD_QUEUE=1, FACEGEN_ADMIT_WAIT_S=0.3)
    release, entered, outcome = threading.Event(), threading.Event(), []
    holder = threading.Thread(target=_hold, args=("upload", entered, release, outcome))
    holder.start()
    assert entered.wait(10)
    try:
        with pytest.raises(admission.Busy, match="within 0.3 s"):
            with admission.admit("upload"):
                pass
    finally:
        release.set()
        holder.join(10)
    assert admission.gate("upload").running == 0 and admission.gate("upload").waiting == 0


def test_limits_come_from_the_environment_and_bad_values_name_the_variable(admission_env):
    admission_env(FACEGEN_ADMIT_ANIMATION=3, FACEGEN_ADMIT_ANIMATION_QUEUE=0, FACEGEN_ADMIT_WAIT_S=1.5)
    assert admission.limits("animation") == admission.Limits(3, 0, 1.5)
    assert admission.limits("upload") == admission.Limits(*admission.WORK_CLASSES["upload"], 1.5)
    admission_env(FACEGEN_ADMIT_GRID="lots")
    with pytest.raises(ValueError, match="FACEGEN_ADMIT_GRID"):
        admission.limits("grid")
    admission_env(FACEGEN_ADMIT_GRID=0)  # a class that can never run would refuse everything
    with pytest.raises(ValueError, match="at least 1"):
        admission.limits("grid")
    with pytest.raises(KeyError, match="unknown work class"):
        admission.limits("video")


def test_only_outputs_larger_than_the_largest_single_face_are_heavy():
    assert not admission.is_heavy(1, 512)
    assert not admission.is_heavy(16, 128)  # the gallery-sized grid
    assert admission.is_heavy(17, 128) and admission.is_heavy(64, 256) and admission.is_heavy(60, 128)


def test_a_heavy_grid_past_the_bound_is_503_json_while_probes_and_faces_answer(client, admission_env):
    admission_env(FACEGEN_ADMIT_GRID=1, FACEGEN_ADMIT_GRID_QUEUE=0, FACEGEN_ADMIT_ANIMATION=1,
                  FACEGEN_ADMIT_ANIMATION_QUEUE=0)
    release, entered, outcome = threading.Event(), threading.Event(), []
    holders = [threading.Thread(target=_hold, args=(name, entered, release, outcome)) for name in ("grid",
                                                                                                   "animation")]
    for holder in holders:
        holder.start()
    deadline = time.monotonic() + 10
    while (admission.gate("grid").running, admission.gate("animation").running) != (1, 1):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        for url in ("/api/faces?n=64&size=256&start=1", "/api/interpolate?from=1&to=2&steps=60&size=128"):
            refused = client.get(url)
            assert refused.status_code == 503, url
            assert refused.headers["Retry-After"] == str(admission.RETRY_AFTER_S)
            assert "in progress" in refused.get_json()["error"]
        # Small grids, listings, single faces and the probes never pass a gate.
        assert client.get("/api/faces?n=16&start=1").status_code == 200
        assert client.get("/api/faces?n=64&size=256&start=1&format=json").status_code == 200
        assert client.get("/api/face?seed=3").status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    finally:
        release.set()
        for holder in holders:
            holder.join(10)
    assert client.get("/api/faces?n=64&size=256&start=1").status_code == 200  # the slot is free again


def test_uploads_pass_the_upload_gate(encoder_client, admission_env):
    admission_env(FACEGEN_ADMIT_UPLOAD=1, FACEGEN_ADMIT_UPLOAD_QUEUE=0)
    release, entered, outcome = threading.Event(), threading.Event(), []
    holder = threading.Thread(target=_hold, args=("upload", entered, release, outcome))
    holder.start()
    assert entered.wait(10)
    try:
        for path in ("/api/edit", "/api/encode"):
            refused = encoder_client.post(path, data=b"\x89PNG\r\n\x1a\n", content_type="image/png")
            assert refused.status_code == 503 and "upload" in refused.get_json()["error"], path
    finally:
        release.set()
        holder.join(10)
    # Free again: the same bytes now reach the decoder, which names what is wrong with them.
    assert encoder_client.post("/api/edit", data=b"\x89PNG\r\n\x1a\n", content_type="image/png").status_code == 400
