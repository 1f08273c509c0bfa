"""Micro-batching: concurrent single-face requests share one generator call.

One :class:`MicroBatcher` per model owns a worker thread. A request thread puts its :class:`FaceRequest` on a
bounded queue and waits on a future; the worker takes the first waiting request, gathers more for up to
``FACEGEN_BATCH_WAIT_MS`` or until ``FACEGEN_MAX_BATCH`` are in hand (whatever piled up while the previous batch
ran is taken at once, without waiting), makes one :meth:`Model.generate` call and hands each row back (the call
runs the SavedModel on rows of one fixed count, facegen/model_folder.py's CALL_ROWS, warmed up at startup).

Back-pressure: a full queue or a request that waited longer than ``FACEGEN_BATCH_TIMEOUT_S`` raises
:class:`Overloaded`, answered as 503 JSON with ``Retry-After``: a crowd gets a quick refusal, never an unbounded
queue. Batching keeps determinism: each face's pixels depend only on its own inputs (tests/test_batcher.py checks
batched bytes against one-at-a-time bytes).

:class:`FaceRenderer` is what the endpoint calls: LRU cache of PNG bytes, then the batcher, whose thread also
encodes the PNGs (measured faster than encoding in the request threads: bench/encode_placement.py).

Uploaded photos (/api/encode, /api/edit) take the same road: one :class:`EncodeBatcher` per model that can encode
batches the framed photos into shared encoder calls, and the faces rebuilt and edited from them go through the
model's :class:`MicroBatcher` like any face, as raw pixels (never through the PNG cache: edits are not kept).
"""

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from app import metrics
from app.cache import PngCache, face_key
from app.errors import ApiError
from app.faces import FaceRequest, encode_face, render_faces
from app.models import Model

log = logging.getLogger(__name__)

# Per-face cost stops falling at about 8 faces per call on a CPU (bench/serve_load.py), and each warmed batch shape
# costs memory, so 16 is the default ceiling.
DEFAULT_MAX_BATCH = 16
DEFAULT_WAIT_MS = 5.0
DEFAULT_QUEUE_SIZE = 256
DEFAULT_TIMEOUT_S = 10.0
RETRY_AFTER_S = 1


class Overloaded(ApiError):
    """The generator cannot take this request now: HTTP 503 with a Retry-After header."""

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_S):
        super().__init__(message, status=503)
        self.retry_after = retry_after


def _env_number(name: str, default, kind=float):
    raw = os.environ.get(name)
    return kind(raw) if raw not in (None, "") else default


_BATCHER_DEFAULT = object()  # submit()'s finish: the batcher's own


class _Batcher:
    """A worker thread that serves single items from a bounded queue in shared calls (see the module docstring).

    Subclasses say what an item is (:meth:`_check`) and how one call serves a batch of them (:meth:`_compute`, given
    the items, returning one result per item); everything else (queue, window, timeouts, metrics, failure
    hand-off) is here.
    """

    what = "the generator"  # for messages: "the generator for 'x' is busy"

    def __init__(self, model: Model, max_batch: int = DEFAULT_MAX_BATCH, wait_ms: float = DEFAULT_WAIT_MS,
                 queue_size: int = DEFAULT_QUEUE_SIZE, timeout_s: float = DEFAULT_TIMEOUT_S, finish=None,
                 metric_labels=None):
        """``finish(request, result)``, if given, runs in the batch thread on each row and its value is the result
        (bench/encode_placement.py uses it to compare encoding there with encoding in the request threads)."""
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        self.model = model
        self.max_batch = int(max_batch)
        self.wait_s = max(0.0, wait_ms / 1000.0)
        self.timeout_s = timeout_s
        self.finish = finish
        self._queue: queue.Queue = queue.Queue(maxsize=int(queue_size))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = None
        depth, sizes, count = metric_labels or (metrics.QUEUE_DEPTH, metrics.BATCH_SIZE, metrics.FACES)
        self._depth = depth.labels(model.name)
        self._batch_sizes = sizes.labels(model.name)
        self._faces = count.labels(model.name)
        self.batches = 0  # calls made, for tests and logs
        self._last_batch = 0
        self.largest_batch = 0

    def _check(self, item) -> None:
        """Raise ValueError for an item this batcher cannot serve."""

    def _compute(self, items: list) -> list:
        raise NotImplementedError

    def _ensure_worker(self) -> None:
        # Started lazily and per process: a thread made before gunicorn forks would not exist in the worker.
        pid = os.getpid()
        if self._thread is not None and self._pid == pid and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != pid or not self._thread.is_alive():
                if self._pid != pid:
                    self._queue = queue.Queue(maxsize=self._queue.maxsize)
                self._pid = pid
                self._thread = threading.Thread(target=self._run, name=f"batcher-{self.model.name}", daemon=True)
                self._thread.start()

    def submit(self, request, finish=_BATCHER_DEFAULT) -> Future:
        """Queue one item; ``finish`` overrides the batcher's own for this item (None: the raw result)."""
        self._check(request)
        self._ensure_worker()
        future: Future = Future()
        try:
            self._queue.put_nowait((request, future, self.finish if finish is _BATCHER_DEFAULT else finish))
        except queue.Full:
            metrics.REJECTED.labels(self.model.name, "queue_full").inc()
            raise Overloaded(f"{self.what} for {self.model.name!r} is busy ({self._queue.maxsize} requests "
                             f"waiting); retry in {RETRY_AFTER_S} s") from None
        self._depth.inc()
        return future

    def wait(self, future: Future, timeout_s: float | None = None):
        """The result of a submitted item, or Overloaded (503) once ``timeout_s`` (default: the batcher's) passed."""
        try:
            return future.result(timeout=self.timeout_s if timeout_s is None else timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued: the worker skips it; already running: the result is dropped
            metrics.REJECTED.labels(self.model.name, "timeout").inc()
            raise Overloaded(f"{self.what} for {self.model.name!r} did not answer within "
                             f"{self.timeout_s:g} s; retry in {RETRY_AFTER_S} s") from None

    def result(self, request, timeout_s: float | None = None, finish=_BATCHER_DEFAULT):
        """One item served in a shared call: its row of the result, or what ``finish`` made of it."""
        return self.wait(self.submit(request, finish), timeout_s)

    def _take(self) -> list:
        """Block for the first request, then gather more until max_batch or the wait window closes."""
        items = [self._queue.get()]
        # A lone client (the last batch held one face and nothing else is queued) gains nothing from the window:
        # it would only add the wait to every request. Any sign of concurrency re-opens it.
        wait_s = self.wait_s if (self._last_batch > 1 or not self._queue.empty()) else 0.0
        deadline = time.monotonic() + wait_s
        while len(items) < self.max_batch:
            try:
                items.append(self._queue.get_nowait())  # whatever piled up: no waiting for it
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        self._depth.dec(len(items))
        self._last_batch = len(items)
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            live = [(request, future, finish) for request, future, finish in items
                    if future.set_running_or_notify_cancel()]
            if not live:
                continue
            count = len(live)
            try:
                rows = self._compute([request for request, _, _ in live])
            except BaseException as error:  # hand the failure to every waiter; the thread lives on
                log.exception("%s call failed for a batch of %d", self.what, count)
                for _, future, _ in live:
                    future.set_exception(error)
                continue
            self.batches += 1
            self.largest_batch = max(self.largest_batch, count)
            self._batch_sizes.observe(count)
            self._faces.inc(count)
            for row, (request, future, finish) in zip(rows, live):
                if finish is None:
                    future.set_result(row)
                    continue
                try:
                    future.set_result(finish(request, row))
                except Exception as error:
                    future.set_exception(error)


class MicroBatcher(_Batcher):
    """Faces: items are :class:`FaceRequest` (or anything with ``model`` and ``resolved()``, like an edited photo's
    face), each row uint8 [H, W, 3] at the model's resolution. One generator call per batch."""

    def warm_up(self) -> None:
        """One call, so no request pays for the first (every call has the same shape: CALL_ROWS)."""
        self.model.generate(np.zeros((1, self.model.latent_size), np.float32),
                            np.zeros((1, len(self.model.attributes)), np.float32))

    def _check(self, request) -> None:
        if request.model is not self.model:
            raise ValueError(f"this batcher serves {self.model.name!r}, not {request.model.name!r}")

    def _compute(self, requests: list) -> list:
        return self.render(requests)

    def render(self, requests: list) -> list:
        """The one generator call a batch of up to max_batch faces gets: the worker thread's call for /api/face, and
        ``python -m facegen generate``'s own in a loop (no queue: it is the only client)."""
        if len(requests) > self.max_batch:
            raise ValueError(f"{len(requests)} faces in one call; at most {self.max_batch}")
        return list(render_faces(requests))

    pixels = _Batcher.result  # without a finish function the result is the face's pixels


class EncodeBatcher(_Batcher):
    """Uploaded photos: items are framed photos, uint8 [S, S, 3] (S = the model's encoder size); each result is
    (noise float32 [latent_size], attribute probabilities float32 [A]). One encoder call per batch, so concurrent
    uploads share a call as concurrent faces do."""

    what = "the encoder"

    def __init__(self, model: Model, **options):
        if not model.can_encode:
            raise ValueError(f"model {model.name!r} has no encoder")
        options.pop("finish", None)  # results are arrays; the face renderer's PNG finish is not for them
        super().__init__(model, metric_labels=(metrics.ENCODE_QUEUE_DEPTH, metrics.ENCODE_BATCH_SIZE,
                                               metrics.PHOTOS_ENCODED), **options)

    def warm_up(self) -> None:
        side = self.model.encoder.size
        self.model.encode(np.zeros((1, side, side, 3), np.uint8))

    def _check(self, photo) -> None:
        side = self.model.encoder.size
        if not (isinstance(photo, np.ndarray) and photo.dtype == np.uint8 and photo.shape == (side, side, 3)):
            raise ValueError(f"a framed photo must be uint8 [{side}, {side}, 3]")

    def _compute(self, photos: list) -> list:
        noise, probabilities = self.model.encode(np.stack(photos))
        return [(noise[row], probabilities[row]) for row in range(len(photos))]


class FaceRenderer:
    """Single faces as PNG bytes: cache, then micro-batched generation with the PNG encoding done in the batch thread.

    Encoding there measured faster than in the request threads (bench/encode_placement.py, BENCHMARKS.md): the
    request threads would contend for the GIL with each other and with the generator call.
    """

    def __init__(self, registry, cache: PngCache | None = None, **batcher_options):
        self.cache = cache if cache is not None else PngCache.from_environment(
            on_hit=metrics.CACHE_HITS.inc, on_miss=metrics.CACHE_MISSES.inc)
        encode_options = {k: v for k, v in batcher_options.items() if k != "finish"}
        batcher_options.setdefault("finish", encode_face)
        self.batchers = {name: MicroBatcher(model, **batcher_options) for name, model in registry.models.items()}
        # Uploaded photos of the models that can encode them: batched the same way, never cached.
        self.encoders = {name: EncodeBatcher(model, **encode_options) for name, model in registry.models.items()
                         if model.can_encode}

    @classmethod
    def from_environment(cls, registry) -> "FaceRenderer":
        return cls(registry,
                   max_batch=_env_number("FACEGEN_MAX_BATCH", DEFAULT_MAX_BATCH, int),
                   wait_ms=_env_number("FACEGEN_BATCH_WAIT_MS", DEFAULT_WAIT_MS),
                   queue_size=_env_number("FACEGEN_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, int),
                   timeout_s=_env_number("FACEGEN_BATCH_TIMEOUT_S", DEFAULT_TIMEOUT_S))

    def warm_up(self) -> None:
        for batcher in (*self.batchers.values(), *self.encoders.values()):
            batcher.warm_up()

    def faces(self, items: list) -> list[np.ndarray]:
        """Several faces of one model (a grid's cells, an animation's frames) as pixels, through that model's
        micro-batcher: in the warmed batch shapes, sharing calls with concurrent requests, behind the same bounded
        queue. Not through the PNG cache, which holds whole encoded faces at their output size, not cells."""
        batcher = self.batchers[items[0].model.name]
        futures = []
        try:
            for item in items:
                futures.append(batcher.submit(item, finish=None))
            return [batcher.wait(future) for future in futures]
        except BaseException:
            for future in futures:  # the queue is full or a face timed out: the rest need not be made
                future.cancel()
            raise

    def png(self, request: FaceRequest) -> bytes:
        key = face_key(request)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        body = self.batchers[request.model.name].result(request)
        self.cache.put(key, body)
        return body


def overloaded_response(error: Overloaded):
    from app.errors import error_response

    response = error_response(error.body(), error.status)
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def init_app(app) -> FaceRenderer:
    renderer = FaceRenderer.from_environment(app.extensions["facegen"])
    renderer.warm_up()
    app.extensions["facegen_renderer"] = renderer
    app.register_error_handler(Overloaded, overloaded_response)
    return renderer
