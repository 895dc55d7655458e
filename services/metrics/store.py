"""Every query of the metrics schema. Nothing here commits: the caller's transaction does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.exposition import HistogramRow
from services.metrics.report import (
    DIMENSIONS,
    INTERVALS,
    MEASURES,
    ReportRow,
    aggregate_columns,
    figures_of,
    measure_columns,
)
from shared.events import (
    AgentReplied,
    AnyConversationEvent,
    Assigned,
    Classified,
    ConversationOpened,
    MessageReceived,
    Resolved,
)

# Each event folds into the conversation's row in a way that does not depend on arrival order:
# times keep the earliest value (LEAST ignores NULL), the classification keeps the latest.
_FOLD: dict[type, str] = {
    ConversationOpened: """UPDATE metrics.conversations SET opened_at = LEAST(opened_at, :at),
                             customer_tier = :tier WHERE conversation_id = :id""",
    MessageReceived: """UPDATE metrics.conversations
                        SET first_message_at = LEAST(first_message_at, :at),
                            customer_messages = customer_messages + 1
                        WHERE conversation_id = :id""",
    Classified: """UPDATE metrics.conversations
                   SET priority = :priority, skill = :skill, language = :language,
                       classified_at = :at
                   WHERE conversation_id = :id
                     AND (classified_at IS NULL OR classified_at <= :at)""",
    Assigned: """UPDATE metrics.conversations
                 SET first_assigned_at = LEAST(first_assigned_at, :at),
                     assignments = assignments + 1,
                     agent_id = CASE WHEN last_assigned_at IS NULL OR last_assigned_at <= :at
                                     THEN :agent ELSE agent_id END,
                     last_assigned_at = GREATEST(last_assigned_at, :at)
                 WHERE conversation_id = :id""",
    AgentReplied: """UPDATE metrics.conversations
                     SET first_response_at = LEAST(first_response_at, :at),
                         agent_replies = agent_replies + 1
                     WHERE conversation_id = :id""",
    Resolved: """UPDATE metrics.conversations SET resolved_at = LEAST(resolved_at, :at)
                 WHERE conversation_id = :id""",
}


REPORT_WORK_MEM = "256MB"


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

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause (bound parameters only) selecting conversations opened in
        [start, end) that match every given filter."""
        clauses = ["opened_at IS NOT NULL"]
        params: dict[str, Any] = {}
        if self.start is not None:
            clauses.append("opened_at >= :start")
            params["start"] = self.start
        if self.end is not None:
            clauses.append("opened_at < :end")
            params["end"] = self.end
        for dimension in DIMENSIONS:
            value = getattr(self, dimension)
            if value is not None:
                clauses.append(f"{dimension} = :{dimension}")
                params[dimension] = value
        return " AND ".join(clauses), params


class MetricsStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def apply(self, event: AnyConversationEvent) -> bool:
        """Fold one event into the facts; False if it was already applied."""
        first_time = await self.session.scalar(
            text("""INSERT INTO metrics.processed_events (event_id) VALUES (:id)
                    ON CONFLICT DO NOTHING RETURNING event_id"""),
            {"id": event.event_id},
        )
        if first_time is None:
            return False
        await self.session.execute(
            text("""INSERT INTO metrics.conversations (conversation_id, channel)
                    VALUES (:id, :channel) ON CONFLICT DO NOTHING"""),
            {"id": event.conversation_id, "channel": event.channel.value},
        )
        sql = _FOLD.get(type(event), "")
        if sql:
            params: dict[str, Any] = {"id": event.conversation_id, "at": event.occurred_at}
            if isinstance(event, ConversationOpened):
                params["tier"] = event.customer_tier.value
            elif isinstance(event, Classified):
                params |= {
                    "priority": event.priority.value,
                    "skill": event.skill.value,
                    "language": event.language,
                }
            elif isinstance(event, Assigned):
                params["agent"] = event.agent_id
            await self.session.execute(text(sql), params)
        return True

    async def report(
        self, filters: Filters, *, group_by: tuple[str, ...] = (), interval: str | None = None
    ) -> list[ReportRow]:
        """Figures of every measure, per group (and per time bucket), computed in SQL."""
        unknown = [g for g in group_by if g not in DIMENSIONS]
        if unknown or (interval is not None and interval not in INTERVALS):
            raise ValueError(f"cannot group by {unknown or interval}")
        keys = list(group_by)
        if interval is not None:
            keys.insert(0, "bucket")
        where, params = filters.where()
        bucket = (
            f"date_bin(INTERVAL '{INTERVALS[interval]}', opened_at, "
            "TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,"
            if interval is not None
            else ""
        )
        group_sql = f"GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
        select_keys = "".join(f"{k}, " for k in keys)
        # Exact percentiles sort every value: let the sort happen in memory, not on disk.
        await self.session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        rows = await self.session.execute(
            text(f"""SELECT {select_keys} count(*) AS conversations,
                            avg(GREATEST(assignments - 1, 0))::float8 AS reassignments_mean,
                            avg(customer_messages + agent_replies)::float8 AS messages_mean,
                            {aggregate_columns()}
                     FROM (SELECT {bucket} {", ".join(DIMENSIONS)}, assignments,
                                  customer_messages, agent_replies, {measure_columns()}
                           FROM metrics.conversations WHERE {where}) c
                     {group_sql}"""),
            params,
        )
        out = []
        for r in rows:
            m = dict(r._mapping)
            out.append(
                ReportRow(
                    group={g: m[g] for g in group_by},
                    conversations=int(m["conversations"]),
                    measures={name: figures_of(m, name) for name in MEASURES},
                    reassignments_mean=m["reassignments_mean"],
                    messages_mean=m["messages_mean"],
                    bucket=m.get("bucket"),
                )
            )
        return out

    async def histograms(self, bounds: tuple[float, ...]) -> dict[str, list[HistogramRow]]:
        """Cumulative bucket counts of each measure per (channel, priority), for /metrics."""
        result: dict[str, list[HistogramRow]] = {}
        for name in ("first_response_s", "resolution_s"):
            buckets = ", ".join(
                f"count(*) FILTER (WHERE {name} <= {float(b)!r}) AS le_{i}"
                for i, b in enumerate(bounds)
            )
            rows = await self.session.execute(
                text(
                    f"""SELECT channel, coalesce(priority, 'unclassified') AS priority,
                           count({name}) AS n, coalesce(sum({name}), 0)::float8 AS total,
                           {buckets}
                    FROM (SELECT channel, priority, {measure_columns()}
                          FROM metrics.conversations) c
                    WHERE {name} IS NOT NULL
                    GROUP BY 1, 2 ORDER BY 1, 2"""
                )
            )
            result[name] = [
                HistogramRow(
                    labels=(r.channel, r.priority),
                    cumulative=[int(r._mapping[f"le_{i}"]) for i in range(len(bounds))],
                    count=int(r.n),
                    total=float(r.total),
                )
                for r in rows
            ]
        return result

    async def counts_by_channel(self) -> dict[str, dict[str, int]]:
        """Conversations opened and resolved, and customer messages, per channel."""
        rows = await self.session.execute(
            text(
                """SELECT channel, count(opened_at) AS opened, count(resolved_at) AS resolved,
                      coalesce(sum(customer_messages), 0)::bigint AS messages
               FROM metrics.conversations GROUP BY channel ORDER BY channel"""
            )
        )
        return {
            r.channel: {
                "opened": int(r.opened),
                "resolved": int(r.resolved),
                "messages": int(r.messages),
            }
            for r in rows
        }
