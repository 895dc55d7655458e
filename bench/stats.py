"""Percentiles for reports (nearest rank, as the metrics service computes them)."""

from __future__ import annotations

from collections.abc import Iterable

from services.metrics.figures import percentile


def pct(values: Iterable[float], p: float, *, scale: float = 1000.0) -> float | None:
    """The p-th percentile of ``values`` times ``scale`` (seconds to ms by default)."""
    ordered = sorted(values)
    return round(percentile(ordered, p) * scale, 2) if ordered else None
