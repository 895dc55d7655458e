"""What the reports are made of: measures, groupings, buckets, and the rows the store returns.
The SQL aggregates (exact, nearest-rank percentiles via ``percentile_disc``); ``figures.py``
holds the same definitions in pure Python, and the tests hold the two to each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.metrics.figures import Figures

# Each measure, in seconds, from the conversation's facts (event timestamps, never the
# consumer's clock); negative differences (skewed clocks) count as zero. Stored as generated
# columns of metrics.conversations (migration 0004), so reports sort ready floats.
MEASURES: dict[str, str] = {
    "first_response_s": "first_response_at - first_message_at",
    "resolution_s": "resolved_at - opened_at",
    "queue_wait_s": "first_assigned_at - opened_at",
}
# Dimensions a report may be filtered and grouped by (column names: safe to put in SQL).
DIMENSIONS = ("channel", "priority", "skill", "language", "agent_id", "customer_tier")
# Time buckets of /v1/metrics/timeseries.
INTERVALS = {"5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}
PERCENTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class ReportRow:
    group: dict[str, Any]
    conversations: int
    measures: dict[str, Figures]
    reassignments_mean: float | None
    messages_mean: float | None
    bucket: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def figures_of(row: dict[str, Any], name: str) -> Figures:
    """The Figures of one measure from an aggregate row."""
    count = int(row[f"{name}_count"] or 0)
    if count == 0:
        return Figures(0, None, None, None, None, None, None, None)
    p50, p90, p95, p99 = (float(v) for v in row[f"{name}_p"])
    return Figures(
        count=count,
        mean=float(row[f"{name}_mean"]),
        min=float(row[f"{name}_min"]),
        max=float(row[f"{name}_max"]),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
    )


def aggregate_columns() -> str:
    """count, mean, min, max and the percentiles of every measure, as SQL select items."""
    items = []
    for name in MEASURES:
        items += [
            f"count({name}) AS {name}_count",
            f"avg({name}) AS {name}_mean",
            f"min({name}) AS {name}_min",
            f"max({name}) AS {name}_max",
            f"percentile_disc(ARRAY{list(PERCENTILES)}) WITHIN GROUP (ORDER BY {name}) AS {name}_p",
        ]
    return ",\n".join(items)


def measure_columns() -> str:
    return ", ".join(MEASURES)


def sla_columns() -> str:
    """Share of conversations with a target that met it (None when none has a target)."""
    return ",\n".join(
        f"avg(CASE WHEN {target} IS NOT NULL AND {measure} IS NOT NULL "
        f"THEN ({measure} <= {target})::int END)::float8 AS sla_{name}_attainment"
        for name, measure, target in (
            ("first_response", "first_response_s", "first_response_target_s"),
            ("resolution", "resolution_s", "resolution_target_s"),
        )
    )
