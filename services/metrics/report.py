"""What the reports are made of: measures, groupings, buckets, and the SQL that aggregates
them (exact, nearest-rank percentiles via ``percentile_disc``); ``figures.py`` holds the same
definitions in pure Python, and the tests hold the two to each other.

Two tables feed a report: ``metrics.conversations`` (one row per conversation: resolution,
queue wait, reassignments, messages, CSAT) and ``metrics.waits`` (one row per answered customer
wait: the first response of each episode, and next replies)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from services.metrics.figures import Figures

Clock = Literal["calendar", "business"]
# Dimensions a report may be filtered and grouped by (column names of both tables).
DIMENSIONS = ("channel", "priority", "skill", "language", "agent_id", "customer_tier", "team")
# Time buckets of /v1/metrics/timeseries.
INTERVALS = {"5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}
PERCENTILES = (0.5, 0.9, 0.95, 0.99)
CONVERSATION_MEASURES = ("resolution_s", "queue_wait_s")
WAIT_MEASURES = ("first_response_s", "next_reply_s")
MEASURES = WAIT_MEASURES + CONVERSATION_MEASURES

# The SLA policy of a conversation: its priority's policy for its channel, else for any ('*').
# Two hash joins on the tiny policies table (a LATERAL subquery per row cost ~1 s per 1M).
TARGET_JOIN = """LEFT JOIN metrics.sla_policies ps
            ON ps.priority = c.priority AND ps.channel = c.channel
        LEFT JOIN metrics.sla_policies pa ON pa.priority = c.priority AND pa.channel = '*'"""
FRT_TARGET = "coalesce(ps.first_response_target_s, pa.first_response_target_s)"
RES_TARGET = "coalesce(ps.resolution_target_s, pa.resolution_target_s)"


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
    count = int(row.get(f"{name}_count") or 0)
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


def aggregate_columns(names: tuple[str, ...]) -> str:
    """count, mean, min, max and the percentiles of each measure, as SQL select items."""
    items = []
    for name in names:
        items += [
            f"count({name}) AS {name}_count",
            f"avg({name}) AS {name}_mean",
            f"min({name}) AS {name}_min",
            f"max({name}) AS {name}_max",
            f"percentile_disc(ARRAY{list(PERCENTILES)}) WITHIN GROUP (ORDER BY {name}) AS {name}_p",
        ]
    return ",\n".join(items)


def attainment(name: str, measure: str, target: str) -> str:
    """Share of rows with a target and a measured time that met it (None when none has)."""
    return (
        f"avg(CASE WHEN {target} IS NOT NULL AND {measure} IS NOT NULL "
        f"THEN ({measure} <= {target})::int END)::float8 AS sla_{name}_attainment"
    )


def _keys(group_by: tuple[str, ...], interval: str | None) -> tuple[list[str], str]:
    unknown = [g for g in group_by if g not in DIMENSIONS]
    if unknown or (interval is not None and interval not in INTERVALS):
        raise ValueError(f"cannot group by {unknown or interval}")
    keys = list(group_by)
    bucket = ""
    if interval is not None:
        keys.insert(0, "bucket")
        bucket = (
            f"date_bin(INTERVAL '{INTERVALS[interval]}', c.opened_at, "
            "TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, "
        )
    return keys, bucket


def _carried(group_by: tuple[str, ...]) -> str:
    """The dimension columns the outer query groups by, and no others: the grouping sort
    moves every carried column of every row, so narrower rows sort faster."""
    return "".join(f"c.{d}, " for d in group_by)


def _grouping(keys: list[str]) -> tuple[str, str]:
    if not keys:
        return "", ""
    return "".join(f"{k}, " for k in keys), f"GROUP BY {', '.join(keys)}"


def conversations_sql(
    where: str, *, group_by: tuple[str, ...], interval: str | None, clock: Clock
) -> str:
    """Per group: conversations, resolution and queue wait, reassignments, messages, SLA
    resolution attainment and CSAT."""
    keys, bucket = _keys(group_by, interval)
    select_keys, group_sql = _grouping(keys)
    suffix = "_s" if clock == "calendar" else "_bs"
    dims = _carried(group_by)
    return f"""SELECT {select_keys} count(*) AS conversations,
                  avg(GREATEST(assignments - 1, 0))::float8 AS reassignments_mean,
                  avg(customer_messages + agent_replies)::float8 AS messages_mean,
                  {attainment("resolution", "resolution_s", "resolution_target_s")},
                  count(score) AS csat_count, avg(score)::float8 AS csat_mean,
                  {aggregate_columns(CONVERSATION_MEASURES)}
           FROM (SELECT {bucket} {dims} assignments, customer_messages, agent_replies,
                        c.resolution{suffix} AS resolution_s,
                        c.queue_wait{suffix} AS queue_wait_s,
                        {RES_TARGET} AS resolution_target_s, s.score
                 FROM metrics.conversations c
                 {TARGET_JOIN}
                 LEFT JOIN metrics.csat s USING (conversation_id)
                 WHERE {where}) c
           {group_sql}"""


def waits_sql(where: str, *, group_by: tuple[str, ...], interval: str | None, clock: Clock) -> str:
    """Per group: first responses (every episode), next replies and SLA first-response
    attainment. The time range and the dimensions are the conversation's."""
    keys, bucket = _keys(group_by, interval)
    select_keys, group_sql = _grouping(keys)
    column = "c.seconds" if clock == "calendar" else "c.business_seconds"
    dims = _carried(group_by)
    return f"""SELECT {select_keys}
                  {attainment("first_response", "first_response_s", "first_response_target_s")},
                  {aggregate_columns(WAIT_MEASURES)}
           FROM (SELECT {bucket} {dims}
                        CASE WHEN c.kind = 'first' THEN {column} END AS first_response_s,
                        CASE WHEN c.kind = 'next' THEN {column} END AS next_reply_s,
                        CASE WHEN c.kind = 'first' THEN {FRT_TARGET} END
                          AS first_response_target_s
                 FROM metrics.waits c
                 {TARGET_JOIN}
                 WHERE {where}) c
           {group_sql}"""


def merge_rows(
    conversation_rows: list[dict[str, Any]],
    wait_rows: list[dict[str, Any]],
    *,
    group_by: tuple[str, ...],
    interval: str | None,
) -> list[ReportRow]:
    """One ReportRow per group (and bucket), from the two queries' rows, in key order."""
    keys = (["bucket"] if interval else []) + list(group_by)

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[k] for k in keys)

    waits = {key(r): r for r in wait_rows}
    convs = {key(r): r for r in conversation_rows}
    out = []
    for k in sorted(convs.keys() | waits.keys(), key=lambda t: [(v is None, v) for v in t]):
        c, w = convs.get(k, {}), waits.get(k, {})
        merged = {**c, **w}
        out.append(
            ReportRow(
                group={g: merged[g] for g in group_by},
                conversations=int(c.get("conversations") or 0),
                measures={name: figures_of(merged, name) for name in MEASURES},
                reassignments_mean=c.get("reassignments_mean"),
                messages_mean=c.get("messages_mean"),
                bucket=merged.get("bucket"),
                extra={
                    "sla_first_response_attainment": w.get("sla_first_response_attainment"),
                    "sla_resolution_attainment": c.get("sla_resolution_attainment"),
                    "csat_count": c.get("csat_count") or 0,
                    "csat_mean": c.get("csat_mean"),
                },
            )
        )
    return out
