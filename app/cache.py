"""A bytes-bounded LRU cache of encoded face PNGs, shared by the threads of one worker process.

``functools.lru_cache`` bounds entries, not bytes, and a 512 px PNG weighs a hundred times a 64 px one, so this is
a small OrderedDict under a lock. Keys are the full normalised query (:func:`face_key`) with the attribute vector
the query resolves to (facegen/attributes.py) in place of its spelling, so two URLs that name the same face
(attributes left to the seed, or spelt out to the same vector) share one entry.
"""

import os
import threading
from collections import OrderedDict

from app.faces import FaceRequest

DEFAULT_CACHE_MB = 64


def face_key(request: FaceRequest) -> tuple:
    """(model name, model version, seed, attribute bits, output size, psi): everything the PNG depends on.

    The noise is the seed's and psi's; the bits are the resolved vector, whatever constraints led to it.
    """
    model = request.model
    vector = request.resolved().attributes
    bits = sum(1 << i for i, on in enumerate(vector) if on)
    return model.name, model.version, request.seed, bits, request.output_size, float(request.psi)


class PngCache:
    """get/put of bytes values; the least recently used entries go once ``max_bytes`` would be exceeded."""

    def __init__(self, max_bytes: int, on_hit=None, on_miss=None):
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._on_hit = on_hit
        self._on_miss = on_miss

    @classmethod
    def from_environment(cls, **hooks) -> "PngCache":
        megabytes = float(os.environ.get("FACEGEN_CACHE_MB", DEFAULT_CACHE_MB))
        return cls(int(megabytes * 1024 * 1024), **hooks)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        hook = self._on_hit if value is not None else self._on_miss
        if hook is not None:
            hook()
        return value

    def put(self, key, value: bytes) -> None:
        size = len(value)
        if size > self.max_bytes:
            return  # would evict everything and still not fit
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= len(old)
            self._entries[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= len(evicted)
