"""A bounded LRU of embedding vectors, keyed by (model, text), counting hits and misses."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    """A bounded LRU keyed by (model, text); counts hits and misses for the metrics."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str]) -> list[float] | None:
        with self._lock:
            vec = self._data.get(key)
            if vec is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return vec

    def put(self, key: tuple[str, str], vec: list[float]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = vec
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def stats(self) -> dict[str, Any]:
        """Counts only: the metrics sum them over the process's routers and derive the hit rate."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self._data)}
