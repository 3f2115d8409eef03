"""Latency of every service call: count, p50, p95, max per operation.

Kept in memory (a bounded window per operation) for the admin page; calls over
the slow threshold are logged.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class OpStats:
    count: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    errors: int


class Metrics:
    def __init__(self, window: int = 2000, slow_ms: float = 500.0):
        self.window = window
        self.slow_ms = slow_ms
        self._samples: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._max: dict[str, float] = {}

    def record(self, op: str, ms: float, ok: bool = True) -> None:
        self._samples.setdefault(op, deque(maxlen=self.window)).append(ms)
        self._counts[op] = self._counts.get(op, 0) + 1
        self._max[op] = max(self._max.get(op, 0.0), ms)
        if not ok:
            self._errors[op] = self._errors.get(op, 0) + 1
        if ms > self.slow_ms:
            log.warning("slow call %s took %.0f ms", op, ms)

    def samples(self, op: str) -> list[float]:
        """The recent latencies of one operation, oldest first (ms)."""
        return list(self._samples.get(op, ()))

    def reset(self, op: str) -> None:
        for d in (self._samples, self._counts, self._errors, self._max):
            d.pop(op, None)

    def snapshot(self) -> dict[str, OpStats]:
        out = {}
        for op, xs in self._samples.items():
            s = sorted(xs)
            out[op] = OpStats(
                self._counts[op],
                s[len(s) // 2],
                s[min(len(s) - 1, int(0.95 * (len(s) - 1) + 0.5))],
                self._max[op],
                self._errors.get(op, 0),
            )
        return out


def timed(op: str):
    """Record the latency of an async service method on `self.metrics`."""

    def deco(fn):
        @functools.wraps(fn)
        async def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            ok = False
            try:
                result = await fn(self, *args, **kwargs)
                ok = True
                return result
            finally:
                self.metrics.record(op, (time.perf_counter() - t) * 1000, ok)

        return wrapper

    return deco
