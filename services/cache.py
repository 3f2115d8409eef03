"""A small TTL + LRU cache for service reads.

Keys are tuples whose first two items are (kind, user_id), so a write can drop
everything of one kind for one user. Bounded by entry count, and emptied when
the process's resident memory passes a limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

_MISSING = object()


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TTLCache:
    def __init__(
        self, ttls: dict[str, float], max_entries: int = 5000, memory_limit_mb: float = 2048
    ):
        self.ttls = ttls
        self.max_entries = max_entries
        self.memory_limit_mb = memory_limit_mb
        self._data: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()
        self.hits = self.misses = 0
        self._checks = 0

    def get(self, key: tuple) -> Any:
        item = self._data.get(key, _MISSING)
        if item is _MISSING:
            self.misses += 1
            return _MISSING
        expires, value = item
        if expires < time.monotonic():
            del self._data[key]
            self.misses += 1
            return _MISSING
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def set(self, key: tuple, value: Any, ttl: float | None = None) -> None:
        """`ttl`: this entry's own lifetime, else its kind's."""
        if ttl is None:
            ttl = self.ttls.get(key[0], 60)
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
        self._checks += 1
        if self._checks % 100 == 0 and rss_mb() > self.memory_limit_mb:
            self.clear()

    def invalidate(self, kind: str, user_id: Hashable, *rest: Hashable) -> None:
        """Drop (kind, user_id, *rest, ...) entries: everything under that prefix."""
        prefix = (kind, user_id, *rest)
        n = len(prefix)
        for key in [k for k in self._data if k[:n] == prefix]:
            del self._data[key]

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    @staticmethod
    def missing(value: Any) -> bool:
        return value is _MISSING
