"""Every query of the metrics schema. Nothing here commits: the caller's transaction does."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.calendars import BusinessCalendar
from services.metrics.exposition import HistogramRow
from services.metrics.facts import Entry, Facts, Moment, derive
from services.metrics.report import (
    DIMENSIONS,
    FRT_TARGET,
    TARGET_JOIN,
    Clock,
    ReportRow,
    conversations_sql,
    merge_rows,
    waits_sql,
)
from shared.events import (
    AgentProfileChanged,
    AgentReplied,
    AgentStatusChanged,
    AnyConversationEvent,
    Assigned,
    Classified,
    ConversationOpened,
    MessageReceived,
    Reopened,
    Resolved,
)

# Events that change a conversation's dimensions; the classification keeps the latest.
_DIMENSIONS_SQL: dict[type, str] = {
    ConversationOpened: """UPDATE metrics.conversations SET customer_tier = :tier
                           WHERE conversation_id = :id""",
    Classified: """UPDATE metrics.conversations
                   SET priority = :priority, skill = :skill, language = :language,
                       classified_at = :at
                   WHERE conversation_id = :id
                     AND (classified_at IS NULL OR classified_at <= :at)""",
}
_MOMENTS: dict[type, Moment] = {
    ConversationOpened: Moment.OPENED,
    Reopened: Moment.REOPENED,
    MessageReceived: Moment.MESSAGE,
    Assigned: Moment.ASSIGNED,
    AgentReplied: Moment.REPLIED,
    Resolved: Moment.RESOLVED,
}

REPORT_WORK_MEM = "256MB"
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
    team: str | None = None

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


def _json(value: Any) -> Any:
    """asyncpg hands jsonb over as text."""
    return json.loads(value) if isinstance(value, str) else value


def choose_calendar(
    rows: list[dict[str, Any]], *, team: str | None, channel: str
) -> BusinessCalendar | None:
    """The calendar of a team, else of a channel (by name when several), else None: the
    desk never closes."""
    for_team = sorted(
        (r for r in rows if team is not None and team in r["teams"]), key=lambda r: r["name"]
    )
    for_channel = sorted((r for r in rows if channel in r["channels"]), key=lambda r: r["name"])
    candidates = for_team or for_channel
    if not candidates:
        return None
    chosen = candidates[0]
    holidays = [date.fromisoformat(str(d)) for d in chosen["holidays"]]
    return BusinessCalendar.parse(
        chosen["name"], chosen["time_zone"], _json(chosen["weekly"]), holidays
    )


def _calendar_row(row: Any) -> dict[str, Any]:
    return dict(row._mapping) | {"weekly": _json(row.weekly)}


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
        moment, dimensions = _MOMENTS.get(type(event)), _DIMENSIONS_SQL.get(type(event))
        if moment is None and dimensions is None:
            return True  # nothing a report measures (offers, queueing, deliveries, SLA marks)
        await self.session.execute(
            text("""INSERT INTO metrics.conversations (conversation_id, channel)
                    VALUES (:id, :channel) ON CONFLICT DO NOTHING"""),
            {"id": event.conversation_id, "channel": event.channel.value},
        )
        if dimensions is not None:
            params: dict[str, Any] = {"id": event.conversation_id, "at": event.occurred_at}
            if isinstance(event, ConversationOpened):
                params["tier"] = event.customer_tier.value
            elif isinstance(event, Classified):
                params |= {
                    "priority": event.priority.value,
                    "skill": event.skill.value,
                    "language": event.language,
                }
            await self.session.execute(text(dimensions), params)
        if moment is not None:
            await self.session.execute(
                text("""INSERT INTO metrics.timeline VALUES (:event, :id, :moment, :at, :agent,
                                                             :team)"""),
                {
                    "event": event.event_id,
                    "id": event.conversation_id,
                    "moment": moment.value,
                    "at": event.occurred_at,
                    "agent": getattr(event, "agent_id", None),
                    "team": getattr(event, "team", None),
                },
            )
        await self.refresh(event.conversation_id)
        return True

    async def refresh(self, conversation_id: uuid.UUID) -> Facts:
        """Derive a conversation's facts anew from its timeline and write them, with its
        waits. The conversation's row is locked first, so a concurrent refresh (a calendar
        change) waits for this one and then sees its timeline. One statement reads the row,
        its timeline and the calendars that may apply (the fold runs for every event)."""
        row = (
            await self.session.execute(
                text("""SELECT c.channel, c.priority, c.skill, c.language, c.customer_tier,
                          ARRAY(SELECT t.moment FROM metrics.timeline t
                                WHERE t.conversation_id = c.conversation_id
                                ORDER BY t.event_id) AS moments,
                          ARRAY(SELECT t.at FROM metrics.timeline t
                                WHERE t.conversation_id = c.conversation_id
                                ORDER BY t.event_id) AS ats,
                          ARRAY(SELECT t.agent_id FROM metrics.timeline t
                                WHERE t.conversation_id = c.conversation_id
                                ORDER BY t.event_id) AS agents,
                          ARRAY(SELECT t.team FROM metrics.timeline t
                                WHERE t.conversation_id = c.conversation_id
                                ORDER BY t.event_id) AS teams,
                          (SELECT json_agg(k) FROM metrics.calendars k
                           WHERE c.channel = ANY(k.channels) OR cardinality(k.teams) > 0)
                            AS calendars
                        FROM metrics.conversations c
                        WHERE c.conversation_id = :id FOR UPDATE OF c"""),
                {"id": conversation_id},
            )
        ).one()
        entries = [
            Entry(Moment(m), at, agent, team)
            for m, at, agent, team in zip(row.moments, row.ats, row.agents, row.teams, strict=True)
        ]
        facts = derive(entries)
        calendar = choose_calendar(_json(row.calendars) or [], team=facts.team, channel=row.channel)
        if calendar is not None:
            facts = derive(entries, calendar)
        dims = {k: getattr(row, k) for k in ("channel", "priority", "skill", "language")}
        await self._write(conversation_id, facts, dims | {"customer_tier": row.customer_tier})
        return facts

    async def _write(self, conversation_id: uuid.UUID, f: Facts, dims: dict[str, Any]) -> None:
        await self.session.execute(
            text("""UPDATE metrics.conversations SET
                      opened_at = :opened_at, first_message_at = :first_message_at,
                      first_assigned_at = :first_assigned_at,
                      first_response_at = :first_response_at, resolved_at = :resolved_at,
                      agent_id = :agent_id, team = :team, assignments = :assignments,
                      reopens = :reopens, customer_messages = :customer_messages,
                      agent_replies = :agent_replies,
                      resolution_s = :resolution_s, resolution_bs = :resolution_bs,
                      queue_wait_s = :queue_wait_s, queue_wait_bs = :queue_wait_bs
                    WHERE conversation_id = :id"""),
            {
                "id": conversation_id,
                **{
                    k: getattr(f, k)
                    for k in (
                        "opened_at first_message_at first_assigned_at first_response_at "
                        "resolved_at agent_id team assignments reopens customer_messages "
                        "agent_replies resolution_s resolution_bs queue_wait_s queue_wait_bs"
                    ).split()
                },
            },
        )
        await self.session.execute(
            text("DELETE FROM metrics.waits WHERE conversation_id = :id"), {"id": conversation_id}
        )
        if f.waits:
            shared = dims | {"id": conversation_id, "opened_at": f.opened_at, "team": f.team}
            await self.session.execute(
                text("""INSERT INTO metrics.waits
                          (conversation_id, seq, kind, episode, started_at, replied_at, seconds,
                           business_seconds, opened_at, channel, priority, skill, language,
                           agent_id, customer_tier, team)
                        VALUES (:id, :seq, :kind, :episode, :started_at, :replied_at, :seconds,
                                :business_seconds, :opened_at, :channel, :priority, :skill,
                                :language, :agent_id, :customer_tier, :team)"""),
                [
                    shared
                    | {
                        "seq": i,
                        "kind": w.kind.value,
                        "episode": w.episode,
                        "started_at": w.started_at,
                        "replied_at": w.replied_at,
                        "seconds": w.seconds,
                        "business_seconds": w.business_seconds,
                        "agent_id": w.agent_id,
                    }
                    for i, w in enumerate(f.waits)
                ],
            )

    # ------------------------------------------------------------ calendars

    async def put_calendar(
        self, calendar: BusinessCalendar, *, channels: Sequence[str], teams: Sequence[str]
    ) -> None:
        await self.session.execute(
            text("""INSERT INTO metrics.calendars VALUES (:name, :tz, :weekly, :holidays,
                                                          :channels, :teams)
                    ON CONFLICT (name) DO UPDATE SET time_zone = excluded.time_zone,
                      weekly = excluded.weekly, holidays = excluded.holidays,
                      channels = excluded.channels, teams = excluded.teams"""),
            {
                "name": calendar.name,
                "tz": calendar.time_zone,
                "weekly": json.dumps(calendar.as_api()),
                "holidays": sorted(calendar.holidays),
                "channels": list(channels),
                "teams": list(teams),
            },
        )

    async def calendars(self) -> list[dict[str, Any]]:
        rows = await self.session.execute(text("SELECT * FROM metrics.calendars ORDER BY name"))
        return [_calendar_row(r) for r in rows]

    async def calendar(self, name: str) -> dict[str, Any] | None:
        row = (
            await self.session.execute(
                text("SELECT * FROM metrics.calendars WHERE name = :name"), {"name": name}
            )
        ).first()
        return _calendar_row(row) if row else None

    async def delete_calendar(self, name: str) -> dict[str, Any] | None:
        row = (
            await self.session.execute(
                text("DELETE FROM metrics.calendars WHERE name = :name RETURNING *"),
                {"name": name},
            )
        ).first()
        return _calendar_row(row) if row else None

    async def conversations_in(
        self, *, channels: Sequence[str], teams: Sequence[str]
    ) -> list[uuid.UUID]:
        """Conversations of these channels or teams (whose business times a calendar sets)."""
        rows = await self.session.execute(
            text("""SELECT conversation_id FROM metrics.conversations
                    WHERE channel = ANY(:channels) OR team = ANY(:teams)"""),
            {"channels": list(channels), "teams": list(teams)},
        )
        return [r[0] for r in rows]

    # ------------------------------------------------------------ agents

    async def apply_agent_event(self, event: AgentStatusChanged | AgentProfileChanged) -> None:
        """Keep the latest status and profile of an agent (older events change nothing)."""
        if isinstance(event, AgentStatusChanged):
            await self.session.execute(
                text("""INSERT INTO metrics.agents (agent_id, status, status_at)
                        VALUES (:id, :status, :at)
                        ON CONFLICT (agent_id) DO UPDATE SET status = excluded.status,
                          status_at = excluded.status_at
                        WHERE agents.status_at IS NULL OR agents.status_at <= excluded.status_at
                """),
                {"id": event.agent_id, "status": event.status.value, "at": event.occurred_at},
            )
            return
        await self.session.execute(
            text("""INSERT INTO metrics.agents (agent_id, team, capacity, profile_at)
                    VALUES (:id, :team, :capacity, :at)
                    ON CONFLICT (agent_id) DO UPDATE SET team = excluded.team,
                      capacity = excluded.capacity, profile_at = excluded.profile_at
                    WHERE agents.profile_at IS NULL OR agents.profile_at <= excluded.profile_at
            """),
            {
                "id": event.agent_id,
                "team": event.team,
                "capacity": json.dumps(event.capacity),
                "at": event.occurred_at,
            },
        )

    async def live_agents(self) -> list[dict[str, Any]]:
        """Every known agent: status, team, capacity per channel and load (its open, assigned
        conversations per channel)."""
        rows = await self.session.execute(
            text("""SELECT a.agent_id, a.status, a.team, a.capacity, a.status_at,
                           coalesce(l.load, '{}'::jsonb) AS load
                    FROM metrics.agents a
                    LEFT JOIN (SELECT agent_id, jsonb_object_agg(channel, n) AS load
                               FROM (SELECT agent_id, channel, count(*) AS n
                                     FROM metrics.conversations
                                     WHERE agent_id IS NOT NULL AND resolved_at IS NULL
                                     GROUP BY 1, 2) per_channel
                               GROUP BY agent_id) l USING (agent_id)
                    ORDER BY a.agent_id""")
        )
        return [
            dict(r._mapping) | {"capacity": _json(r.capacity), "load": _json(r.load)} for r in rows
        ]

    # ------------------------------------------------------------ reports

    async def conversation_rows(
        self, filters: Filters, *, group_by: tuple[str, ...], interval: str | None, clock: Clock
    ) -> list[dict[str, Any]]:
        """Aggregates of metrics.conversations per group (see report.conversations_sql)."""
        where, params = filters.where("c.")
        sql = conversations_sql(where, group_by=group_by, interval=interval, clock=clock)
        return await self._aggregate(sql, params)

    async def wait_rows(
        self, filters: Filters, *, group_by: tuple[str, ...], interval: str | None, clock: Clock
    ) -> list[dict[str, Any]]:
        """Aggregates of metrics.waits per group (see report.waits_sql)."""
        where, params = filters.where("c.")
        sql = waits_sql(where, group_by=group_by, interval=interval, clock=clock)
        return await self._aggregate(sql, params)

    async def _aggregate(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        # Exact percentiles sort every value: let the sort happen in memory, not on disk.
        await self.session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        return [dict(r._mapping) for r in await self.session.execute(text(sql), params)]

    async def export_snapshot(self) -> str:
        """Start a repeatable-read transaction and name its snapshot for another to share."""
        await self.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        return str(await self.session.scalar(text("SELECT pg_export_snapshot()")))

    async def use_snapshot(self, snapshot: str) -> None:
        await self.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        await self.session.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))

    async def histograms(self, bounds: tuple[float, ...]) -> dict[str, list[HistogramRow]]:
        """Cumulative bucket counts per (channel, priority), for /metrics: first responses
        (every episode's) and resolution times, in calendar time."""
        sources = {
            "first_response_s": "SELECT channel, priority, seconds AS v FROM metrics.waits "
            "WHERE kind = 'first'",
            "resolution_s": "SELECT channel, priority, resolution_s AS v "
            "FROM metrics.conversations WHERE resolution_s IS NOT NULL",
        }
        result: dict[str, list[HistogramRow]] = {}
        for name, source in sources.items():
            buckets = ", ".join(
                f"count(*) FILTER (WHERE v <= {float(b)!r}) AS le_{i}" for i, b in enumerate(bounds)
            )
            rows = await self.session.execute(
                text(
                    f"""SELECT channel, coalesce(priority, 'unclassified') AS priority,
                           count(*) AS n, coalesce(sum(v), 0)::float8 AS total, {buckets}
                    FROM ({source}) c GROUP BY 1, 2 ORDER BY 1, 2"""
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


async def _aggregates(
    sessions: async_sessionmaker[AsyncSession],
    filters: Filters,
    *,
    group_by: tuple[str, ...],
    interval: str | None,
    clock: Clock,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of both tables' aggregates, computed at once on two connections that share
    one snapshot: consistent with each other, in the time of the slower query."""
    async with sessions() as first, first.begin():
        snapshot = await MetricsStore(first).export_snapshot()

        async def waits() -> list[dict[str, Any]]:
            async with sessions() as second, second.begin():
                store = MetricsStore(second)
                await store.use_snapshot(snapshot)
                return await store.wait_rows(
                    filters, group_by=group_by, interval=interval, clock=clock
                )

        conversation_rows, wait_rows = await asyncio.gather(
            MetricsStore(first).conversation_rows(
                filters, group_by=group_by, interval=interval, clock=clock
            ),
            waits(),
        )
    return conversation_rows, wait_rows


async def report(
    sessions: async_sessionmaker[AsyncSession],
    filters: Filters,
    *,
    group_by: tuple[str, ...] = (),
    interval: str | None = None,
    clock: Clock = "calendar",
) -> list[ReportRow]:
    """Figures of every measure, per group (and per time bucket), computed in SQL."""
    convs, waits = await _aggregates(
        sessions, filters, group_by=group_by, interval=interval, clock=clock
    )
    return merge_rows(convs, waits, group_by=group_by, interval=interval)
