"""Percentiles the benchmarks print (nearest rank, as the BENCHMARKS.md tables use)."""

from __future__ import annotations

import statistics


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def stats(xs: list[float], digits: int = 2) -> dict[str, float]:
    return {
        "p50": round(statistics.median(xs), digits),
        "p95": round(pct(xs, 95), digits),
        "max": round(max(xs), digits),
    }
