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
    sla_columns,
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

# The SLA policy of a conversation: its priority's policy for its channel, else for any ('*').
# Two hash joins on the tiny policies table (a LATERAL subquery per row cost ~1 s per 1M).
TARGET_JOIN = """LEFT JOIN metrics.sla_policies ps
            ON ps.priority = c.priority AND ps.channel = c.channel
        LEFT JOIN metrics.sla_policies pa ON pa.priority = c.priority AND pa.channel = '*'"""
FRT_TARGET = "coalesce(ps.first_response_target_s, pa.first_response_target_s)"
RES_TARGET = "coalesce(ps.resolution_target_s, pa.resolution_target_s)"
LIVE = "opened_at IS NOT NULL AND first_response_at IS NULL AND resolved_at IS NULL"


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

    def where(self, alias: str = "") -> tuple[str, dict[str, Any]]:
        """The WHERE clause (bound parameters only) selecting conversations opened in
        [start, end) that match every given filter."""
        clauses = [f"{alias}opened_at IS NOT NULL"]
        params: dict[str, Any] = {}
        if self.start is not None:
            clauses.append(f"{alias}opened_at >= :start")
            params["start"] = self.start
        if self.end is not None:
            clauses.append(f"{alias}opened_at < :end")
            params["end"] = self.end
        for dimension in DIMENSIONS:
            value = getattr(self, dimension)
            if value is not None:
                clauses.append(f"{alias}{dimension} = :{dimension}")
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
        where, params = filters.where("c.")
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
                            {sla_columns()},
                            count(score) AS csat_count, avg(score)::float8 AS csat_mean,
                            {aggregate_columns()}
                     FROM (SELECT {bucket} {", ".join("c." + d for d in DIMENSIONS)}, assignments,
                                  customer_messages, agent_replies, {measure_columns()},
                                  {FRT_TARGET} AS first_response_target_s,
                                  {RES_TARGET} AS resolution_target_s, s.score
                           FROM metrics.conversations c
                           {TARGET_JOIN}
                           LEFT JOIN metrics.csat s USING (conversation_id)
                           WHERE {where}) c
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
                    extra={
                        k: m[k]
                        for k in (
                            "sla_first_response_attainment",
                            "sla_resolution_attainment",
                            "csat_count",
                            "csat_mean",
                        )
                    },
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

    # ------------------------------------------------------------ SLA policies, crossings, CSAT

    async def put_policy(self, priority: str, channel: str, frt_s: float, res_s: float) -> None:
        await self.session.execute(
            text(
                """INSERT INTO metrics.sla_policies VALUES (:p, :c, :f, :r)
               ON CONFLICT (priority, channel) DO UPDATE SET
                 first_response_target_s = excluded.first_response_target_s,
                 resolution_target_s = excluded.resolution_target_s"""
            ),
            {"p": priority, "c": channel, "f": frt_s, "r": res_s},
        )

    async def policies(self) -> list[dict[str, Any]]:
        rows = await self.session.execute(
            text("SELECT * FROM metrics.sla_policies ORDER BY priority, channel")
        )
        return [dict(r._mapping) for r in rows]

    async def at_risk(self, now: datetime, *, limit: int) -> list[dict[str, Any]]:
        """Live (unanswered, unresolved) conversations with a target, least time left first."""
        rows = await self.session.execute(
            text(
                f"""SELECT conversation_id, c.channel, c.priority, agent_id, first_message_at,
                       {FRT_TARGET} AS target_s,
                       date_part('epoch', :now - first_message_at) AS elapsed_s,
                       {FRT_TARGET} - date_part('epoch', :now - first_message_at)
                         AS time_left_s
                FROM metrics.conversations c {TARGET_JOIN}
                WHERE {LIVE} AND {FRT_TARGET} IS NOT NULL
                ORDER BY time_left_s LIMIT :limit"""
            ),
            {"now": now, "limit": limit},
        )
        return [dict(r._mapping) for r in rows]

    async def cross(self, now: datetime, *, kind: str, fraction: float) -> list[dict[str, Any]]:
        """Mark (once) the live conversations that used ``fraction`` of their first-response
        target; ``kind`` is at_risk or breached. Concurrent replicas each mark different ones."""
        column = {"at_risk": "sla_at_risk_at", "breached": "sla_breached_at"}[kind]
        rows = await self.session.execute(
            text(
                f"""UPDATE metrics.conversations u SET {column} = :now
                FROM (SELECT c.conversation_id, {FRT_TARGET} AS target_s
                      FROM metrics.conversations c {TARGET_JOIN}
                      WHERE {LIVE} AND c.{column} IS NULL
                        AND {FRT_TARGET} IS NOT NULL
                        AND date_part('epoch', :now - c.first_message_at)
                            >= :fraction * {FRT_TARGET}
                      FOR UPDATE OF c SKIP LOCKED) due
                WHERE u.conversation_id = due.conversation_id
                RETURNING u.conversation_id, u.channel, u.priority, due.target_s,
                          date_part('epoch', :now - u.first_message_at) AS elapsed_s"""
            ),
            {"now": now, "fraction": fraction},
        )
        return [dict(r._mapping) for r in rows]

    async def breaches_by_label(self) -> dict[tuple[str, str], int]:
        rows = await self.session.execute(
            text(
                """SELECT channel, coalesce(priority, 'unclassified') AS priority, count(*) AS n
               FROM metrics.conversations WHERE sla_breached_at IS NOT NULL GROUP BY 1, 2"""
            )
        )
        return {(r.channel, r.priority): int(r.n) for r in rows}

    async def put_csat(
        self, conversation_id: Any, score: int, comment: str | None, now: datetime
    ) -> str:
        """Record a score; 'ok', or why not: 'unknown' or 'unresolved'."""
        resolved = await self.session.scalar(
            text(
                "SELECT resolved_at IS NOT NULL FROM metrics.conversations "
                "WHERE conversation_id = :id"
            ),
            {"id": conversation_id},
        )
        if resolved is None:
            return "unknown"
        if not resolved:
            return "unresolved"
        await self.session.execute(
            text(
                """INSERT INTO metrics.csat VALUES (:id, :score, :comment, :now)
               ON CONFLICT (conversation_id) DO UPDATE SET score = excluded.score,
                 comment = excluded.comment, received_at = excluded.received_at"""
            ),
            {"id": conversation_id, "score": score, "comment": comment, "now": now},
        )
        return "ok"

    async def live_queues(self, now: datetime) -> list[dict[str, Any]]:
        """Waiting conversations (not yet assigned, not resolved) per channel and priority."""
        rows = await self.session.execute(
            text(
                """SELECT channel, coalesce(priority, 'unclassified') AS priority,
                      count(*) AS depth,
                      date_part('epoch', :now - min(first_message_at)) AS oldest_wait_s
               FROM metrics.conversations
               WHERE opened_at IS NOT NULL AND first_assigned_at IS NULL
                 AND resolved_at IS NULL
               GROUP BY 1, 2 ORDER BY 1, 2"""
            ),
            {"now": now},
        )
        return [dict(r._mapping) for r in rows]
