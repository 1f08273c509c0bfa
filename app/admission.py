"""Admission control: a per-worker bound on concurrent heavy requests, so light ones never queue behind them.

A gunicorn worker has a fixed pool of request threads (``GUNICORN_THREADS``). Without a bound, eight slow grids or
eight large uploads take every thread, and ``/healthz``, ``/readyz`` and single faces wait behind them (Kubernetes'
probes then fail and restart the pod). Heavy work therefore passes a gate named by its *work class*; each class has
its own limits, counted per worker process:

=========== ====================================================== ===== ===== =======================================
class       what                                                   limit queue environment
=========== ====================================================== ===== ===== =======================================
``upload``  uploaded photos: reading, decoding, detecting, encoding   1     7   ``FACEGEN_ADMIT_UPLOAD``, ``..._QUEUE``
            and editing (``/api/encode``, ``/api/edit``)
``grid``    grids (``/api/faces``) larger than :data:`HEAVY_PIXELS`    1     2   ``FACEGEN_ADMIT_GRID``, ``..._QUEUE``
``animation`` GIF/WebP morphs (``/api/interpolate``) larger than      1     2   ``FACEGEN_ADMIT_ANIMATION``, ...
            :data:`HEAVY_PIXELS`
=========== ====================================================== ===== ===== =======================================

``limit`` requests of a class run at once; up to ``queue`` more wait for a slot, at most ``FACEGEN_ADMIT_WAIT_S``
seconds (default 10); anything past that is refused at once with :class:`Busy`: HTTP 503, JSON
``{"error": ...}`` and ``Retry-After`` (app/batcher.py's handler for :class:`~app.batcher.Overloaded`). A waiting or
running heavy request holds one request thread, so the defaults hold at most 8 + 3 + 3 = 14 of a worker's 16
threads (gunicorn.conf.py): two always remain for health probes and single faces, which never pass a gate.

Use it as a context manager, or as a decorator on a Flask view::

    from app import admission

    with admission.admit("upload"):           # before the body is read: a stalled upload holds a slot, not more
        photo = read_and_edit(...)

    @admission.admitted("upload")
    def edit(): ...

A new kind of heavy work adds its row to :data:`WORK_CLASSES` (its defaults) rather than a gate of its own, so every
limit is listed here and in docs/DEPLOY.md. Tests call :func:`reset` after changing the environment.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from dataclasses import dataclass

from app.batcher import Overloaded

# Output pixels above which a grid or an animation is heavy: the largest single face (limits.SIZES' 512 px). A
# gallery-sized grid (16 cells of 128 px) is exactly this and passes without a gate.
HEAVY_PIXELS = 512 * 512
DEFAULT_WAIT_S = 10.0
RETRY_AFTER_S = 2

# class -> (limit, queue): how many run at once and how many more may wait, per worker process.
# One upload at a time: decoding the largest allowed PNG or WebP takes up to 265 MB for a moment (app/uploads.py),
# and two workers of a 2 GiB pod must fit it beside their models (docs/DEPLOY.md).
WORK_CLASSES = {"upload": (1, 7), "grid": (1, 2), "animation": (1, 2)}


class Busy(Overloaded):
    """Too much heavy work of one class in this worker: HTTP 503 with Retry-After (see the module docstring)."""


@dataclass(frozen=True)
class Limits:
    limit: int
    queue: int
    wait_s: float


def _env_number(name: str, default, kind=int, low=0):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {raw!r}")
    return value


def limits(work_class: str) -> Limits:
    """The class's limits: :data:`WORK_CLASSES` overridden by ``FACEGEN_ADMIT_<CLASS>`` (running at once, at least
    1), ``FACEGEN_ADMIT_<CLASS>_QUEUE`` (waiting) and ``FACEGEN_ADMIT_WAIT_S``."""
    if work_class not in WORK_CLASSES:
        raise KeyError(f"unknown work class {work_class!r}; known: {', '.join(WORK_CLASSES)}")
    limit, queue = WORK_CLASSES[work_class]
    prefix = f"FACEGEN_ADMIT_{work_class.upper()}"
    return Limits(_env_number(prefix, limit, low=1), _env_number(prefix + "_QUEUE", queue),
                  _env_number("FACEGEN_ADMIT_WAIT_S", DEFAULT_WAIT_S, float))


class Gate:
    """At most ``limit`` holders at once; up to ``queue`` callers wait at most ``wait_s`` for a slot."""

    def __init__(self, work_class: str, bounds: Limits):
        self.work_class = work_class
        self.bounds = bounds
        self._condition = threading.Condition()
        self.running = 0
        self.waiting = 0

    def _busy(self, why: str) -> Busy:
        return Busy(f"too many {self.work_class} requests in progress on this server process ({why}); retry in "
                    f"{RETRY_AFTER_S} s", retry_after=RETRY_AFTER_S)

    @contextlib.contextmanager
    def enter(self):
        with self._condition:
            if self.running >= self.bounds.limit:
                if self.waiting >= self.bounds.queue:
                    raise self._busy(f"{self.running} running, {self.waiting} waiting")
                self.waiting += 1
                deadline = time.monotonic() + self.bounds.wait_s
                try:
                    while self.running >= self.bounds.limit:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise self._busy(f"none finished within {self.bounds.wait_s:g} s")
                        self._condition.wait(remaining)
                finally:
                    self.waiting -= 1
            self.running += 1
        try:
            yield
        finally:
            with self._condition:
                self.running -= 1
                self._condition.notify()


_gates: dict[str, Gate] = {}
_gates_lock = threading.Lock()


def gate(work_class: str) -> Gate:
    """This process's gate for ``work_class`` (made on first use from :func:`limits`)."""
    with _gates_lock:
        if work_class not in _gates:
            _gates[work_class] = Gate(work_class, limits(work_class))
        return _gates[work_class]


def admit(work_class: str):
    """Context manager: run the block as one request of ``work_class``, or raise :class:`Busy` (503)."""
    return gate(work_class).enter()


def admitted(work_class: str):
    """Decorator form of :func:`admit` for a view function."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            with admit(work_class):
                return view(*args, **kwargs)
        return wrapper
    return decorate


def is_heavy(faces: int, side: int) -> bool:
    """Whether ``faces`` images of ``side`` pixels (a grid's cells, an animation's frames) are heavy work."""
    return faces * side * side > HEAVY_PIXELS


def reset() -> None:
    """Forget every gate, so the next use reads the environment again (tests)."""
    with _gates_lock:
        _gates.clear()


def admit_images(work_class: str, count: int, side: int):
    """:func:`admit` for ``count`` images of ``side`` pixels when they are heavy (:func:`is_heavy`), else no gate."""
    return admit(work_class) if is_heavy(count, side) else contextlib.nullcontext()
