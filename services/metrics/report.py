"""What a report is made of: the dimensions it filters and groups by, its time buckets and
its rows. ``columnar.py`` computes them and ``figures.py`` holds the definitions
in plain Python; the tests hold the two to each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from services.metrics.figures import Figures

Clock = Literal["calendar", "business"]
# Dimensions a report may be filtered and grouped by (columns of conversations and waits).
DIMENSIONS = ("channel", "priority", "skill", "language", "agent_id", "customer_tier", "team")
# Time buckets of /v1/metrics/timeseries, in seconds.
INTERVAL_SECONDS = {"5m": 300, "1h": 3_600, "1d": 86_400}


@dataclass(frozen=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    channel: str | None = None
    priority: str | None = None
    skill: str | None = None
    language: str | None = None
    agent_id: str | None = None
    customer_tier: str | None = None
    team: str | None = None

    def dimensions(self) -> dict[str, str]:
        """The dimensions filtered on, with their values."""
        return {d: getattr(self, d) for d in DIMENSIONS if getattr(self, d) is not None}


@dataclass(frozen=True)
class ReportRow:
    group: dict[str, Any]
    conversations: int
    measures: dict[str, Figures]
    reassignments_mean: float | None
    messages_mean: float | None
    bucket: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
