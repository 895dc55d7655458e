"""Pure computations of response-time figures: count, mean, min, max and exact percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PERCENTILES = (50, 90, 95, 99)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ascending ``ordered``: the smallest observed value with at
    least p% of the observations at or below it (always a real observation, never interpolated)."""
    if not ordered:
        raise ValueError("percentile of no values")
    return ordered[rank(p, len(ordered)) - 1]


def rank(p: float, n: int) -> int:
    """The rank (from 1) of the nearest-rank p-th percentile among n ascending values."""
    return max(math.ceil(p / 100 * n), 1)


@dataclass(frozen=True)
class Figures:
    count: int
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


def summarize(values: Iterable[float]) -> Figures:
    """Figures of a set of durations in seconds (all None but count when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return Figures(0, None, None, None, None, None, None, None)
    p50, p90, p95, p99 = (percentile(ordered, p) for p in PERCENTILES)
    return Figures(
        count=len(ordered),
        mean=math.fsum(ordered) / len(ordered),
        min=ordered[0],
        max=ordered[-1],
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
    )
