"""Micro-batching: concurrent single-face requests share one generator call.

One :class:`MicroBatcher` per model owns a worker thread. A request thread puts its :class:`FaceRequest` on a
bounded queue and waits on a future; the worker takes the first waiting request, gathers more for up to
``FACEGEN_BATCH_WAIT_MS`` or until ``FACEGEN_MAX_BATCH`` are in hand (whatever piled up while the previous batch
ran is taken at once, without waiting), pads the batch to a power of two so the generator only ever sees a few
shapes (each warmed up at startup), makes one :meth:`Model.generate` call and hands each row back.

Back-pressure: a full queue or a request that waited longer than ``FACEGEN_BATCH_TIMEOUT_S`` raises
:class:`Overloaded`, answered as 503 JSON with ``Retry-After``: a crowd gets a quick refusal, never an unbounded
queue. Batching keeps determinism: each face's pixels depend only on its own inputs (tests/test_batcher.py checks
batched bytes against one-at-a-time bytes).

:class:`FaceRenderer` is what the endpoint calls: LRU cache of PNG bytes, then the batcher, whose thread also
encodes the PNGs (measured faster than encoding in the request threads: bench/encode_placement.py).
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
from app.faces import FaceRequest, encode_png, face_inputs, to_image
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


def buckets(max_batch: int) -> list[int]:
    """Powers of two up to max_batch, and max_batch itself: the only batch shapes the generator sees."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch]


def bucket_for(count: int, sizes: list[int]) -> int:
    return next(size for size in sizes if size >= count)


def _env_number(name: str, default, kind=float):
    raw = os.environ.get(name)
    return kind(raw) if raw not in (None, "") else default


class MicroBatcher:
    def __init__(self, model: Model, max_batch: int = DEFAULT_MAX_BATCH, wait_ms: float = DEFAULT_WAIT_MS,
                 queue_size: int = DEFAULT_QUEUE_SIZE, timeout_s: float = DEFAULT_TIMEOUT_S, finish=None):
        """``finish(request, pixels)``, if given, runs in the batch thread on each row and its value is the result
        (bench/encode_placement.py uses it to compare encoding there with encoding in the request threads)."""
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        self.model = model
        self.max_batch = int(max_batch)
        self.wait_s = max(0.0, wait_ms / 1000.0)
        self.timeout_s = timeout_s
        self.finish = finish
        self.sizes = buckets(self.max_batch)
        self._queue: queue.Queue = queue.Queue(maxsize=int(queue_size))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._depth = metrics.QUEUE_DEPTH.labels(model.name)
        self._batch_sizes = metrics.BATCH_SIZE.labels(model.name)
        self._faces = metrics.FACES.labels(model.name)
        self.batches = 0  # generator calls made, for tests and logs
        self._last_batch = 0
        self.largest_batch = 0

    def warm_up(self) -> None:
        """Run each bucket shape once, so no request pays for a first call with a new shape."""
        for size in self.sizes:
            self.model.generate(np.zeros((size, self.model.latent_size), np.float32),
                                np.zeros((size, len(self.model.attributes)), np.float32))

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

    def submit(self, request: FaceRequest) -> Future:
        if request.model is not self.model:
            raise ValueError(f"this batcher serves {self.model.name!r}, not {request.model.name!r}")
        self._ensure_worker()
        future: Future = Future()
        try:
            self._queue.put_nowait((request, future))
        except queue.Full:
            metrics.REJECTED.labels(self.model.name, "queue_full").inc()
            raise Overloaded(f"the generator for {self.model.name!r} is busy ({self._queue.maxsize} requests "
                             f"waiting); retry in {RETRY_AFTER_S} s") from None
        self._depth.inc()
        return future

    def result(self, request: FaceRequest, timeout_s: float | None = None):
        """One face generated in a shared batch: uint8 [H, W, 3] at the model's resolution, or what ``finish``
        made of it."""
        future = self.submit(request)
        try:
            return future.result(timeout=self.timeout_s if timeout_s is None else timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued: the worker skips it; already running: the result is dropped
            metrics.REJECTED.labels(self.model.name, "timeout").inc()
            raise Overloaded(f"the generator for {self.model.name!r} did not answer within "
                             f"{self.timeout_s:g} s; retry in {RETRY_AFTER_S} s") from None

    pixels = result  # without a finish function the result is the face's pixels

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
            live = [(request, future) for request, future in items if future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                inputs = [face_inputs(request) for request, _ in live]
                count = len(inputs)
                size = bucket_for(count, self.sizes)
                noise = np.zeros((size, self.model.latent_size), np.float32)
                attrs = np.zeros((size, len(self.model.attributes)), np.float32)
                for row, (n, a) in enumerate(inputs):
                    noise[row], attrs[row] = n, a
                images = self.model.generate(noise, attrs)
            except BaseException as error:  # hand the failure to every waiter; the thread lives on
                log.exception("generator call failed for a batch of %d", len(live))
                for _, future in live:
                    future.set_exception(error)
                continue
            self.batches += 1
            self.largest_batch = max(self.largest_batch, count)
            self._batch_sizes.observe(count)
            self._faces.inc(count)
            for row, (request, future) in enumerate(live):
                if self.finish is None:
                    future.set_result(images[row])
                    continue
                try:
                    future.set_result(self.finish(request, images[row]))
                except Exception as error:
                    future.set_exception(error)


def encode_face(request: FaceRequest, pixels: np.ndarray) -> bytes:
    return encode_png(to_image(pixels, request.output_size))


class FaceRenderer:
    """Single faces as PNG bytes: cache, then micro-batched generation with the PNG encoding done in the batch thread.

    Encoding there measured faster than in the request threads (bench/encode_placement.py, BENCHMARKS.md): the
    request threads would contend for the GIL with each other and with the generator call.
    """

    def __init__(self, registry, cache: PngCache | None = None, **batcher_options):
        self.cache = cache if cache is not None else PngCache.from_environment(
            on_hit=metrics.CACHE_HITS.inc, on_miss=metrics.CACHE_MISSES.inc)
        batcher_options.setdefault("finish", encode_face)
        self.batchers = {name: MicroBatcher(model, **batcher_options) for name, model in registry.models.items()}

    @classmethod
    def from_environment(cls, registry) -> "FaceRenderer":
        return cls(registry,
                   max_batch=_env_number("FACEGEN_MAX_BATCH", DEFAULT_MAX_BATCH, int),
                   wait_ms=_env_number("FACEGEN_BATCH_WAIT_MS", DEFAULT_WAIT_MS),
                   queue_size=_env_number("FACEGEN_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, int),
                   timeout_s=_env_number("FACEGEN_BATCH_TIMEOUT_S", DEFAULT_TIMEOUT_S))

    def warm_up(self) -> None:
        for batcher in self.batchers.values():
            batcher.warm_up()

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
