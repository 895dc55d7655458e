"""Pure computations of response-time figures: count, mean, min, max and exact percentiles."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class ConversationFacts:
    """What metrics knows of one conversation (times are the events' own timestamps)."""

    conversation_id: uuid.UUID
    channel: str
    priority: str | None
    skill: str | None
    language: str | None
    agent_id: str | None
    opened_at: datetime | None
    first_message_at: datetime | None
    first_assigned_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None

    @property
    def first_response_s(self) -> float | None:
        """First agent reply − first customer message."""
        return _seconds(self.first_message_at, self.first_response_at)

    @property
    def resolution_s(self) -> float | None:
        """Resolved − opened."""
        return _seconds(self.opened_at, self.resolved_at)

    @property
    def queue_wait_s(self) -> float | None:
        """Opened − first assigned."""
        return _seconds(self.opened_at, self.first_assigned_at)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ascending ``ordered``: the smallest observed value with at
    least p% of the observations at or below it (always a real observation, never interpolated)."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


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
