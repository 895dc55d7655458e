"""Metrics' statements for a batch of conversation events (the consumer folds a poll in one
transaction): claim the events, read and lock what they touch, write the plan of
``fold_batch.py`` set-based. Folding one event at a time is store.py's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.calendar_store import CalendarStore, choose_calendar
from services.metrics.calendars import BusinessCalendar
from services.metrics.facts import (
    Entry,
    Fold,
    Moment,
)
from services.metrics.fold_batch import (
    BEGINNING,
    WAIT_COPY,
    Dimensions,
    Kept,
    Plan,
    WholeTimeline,
    entry_of,
    folded,
    plan,
    since_of,
)
from services.metrics.rows import FOLD_TIMES, fold_of, json_param, wait_values
from services.metrics.store import MOMENT_ORDER
from shared.events import (
    AgentProfileChanged,
    AgentStatusChanged,
    AnyConversationEvent,
)

AGENT_EVENTS = (AgentStatusChanged, AgentProfileChanged)
# The columns a batch writes, with their types (unnest takes one array per column).
FACT_COLUMNS = [
    *((n, "timestamptz") for n in ("opened_at", "first_message_at", "first_assigned_at")),
    *((n, "timestamptz") for n in ("first_response_at", "resolved_at")),
    ("agent_id", "text"),
    ("team", "text"),
    *((n, "integer") for n in ("assignments", "reopens", "customer_messages", "agent_replies")),
    ("held_by", "text"),
    ("queued_since", "timestamptz"),
    ("stuck_since", "timestamptz"),
    *((n, "float8") for n in ("resolution_s", "resolution_bs", "queue_wait_s", "queue_wait_bs")),
]
DIMENSION_COLUMNS = [
    *((n, "text") for n in ("customer_tier", "priority", "skill", "language")),
    ("classified_at", "timestamptz"),
]
WAIT_COPY_COLUMNS = [(n, "timestamptz" if n == "opened_at" else "text") for n in WAIT_COPY]
WAIT_ROW_COLUMNS = [
    ("conversation_id", "uuid"),
    ("seq", "integer"),
    ("kind", "text"),
    ("episode", "integer"),
    ("started_at", "timestamptz"),
    ("replied_at", "timestamptz"),
    ("seconds", "float8"),
    ("business_seconds", "float8"),
    *WAIT_COPY_COLUMNS[:1],
    ("channel", "text"),
    *((n, "text") for n in ("priority", "skill", "language", "agent_id", "customer_tier")),
    ("team", "text"),
]


def array_columns(columns: list[tuple[str, str]]) -> str:
    """Parameters named after columns, each an array of the column's type (for unnest)."""
    return ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns)


def states_json(folds: Iterable[Fold]) -> list[str]:
    """Folds as the timeline keeps them: the jsonb of ``json.dumps(json_ready(asdict(fold)))``
    (``MetricsStore.apply``), without asdict's deep copy of every value (75 µs a fold, a third
    of the batch fold's CPU), and formatting each time once: the folds of a conversation
    share their datetime objects, and isoformat was most of what was left."""
    iso: dict[int, str] = {}  # by id(): every fold, so every time, lives until the end
    out: list[str] = []
    for fold in folds:
        values = dict(vars(fold))
        for name in FOLD_TIMES:
            at = values[name]
            if at is not None:
                formatted = iso.get(id(at))
                if formatted is None:
                    formatted = iso[id(at)] = at.isoformat()
                values[name] = formatted
        out.append(json.dumps(values, separators=(",", ":")))  # jsonb keeps no spaces
    return out


class FoldStore:
    """The statements of a batch of events (one event at a time: ``MetricsStore``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def apply_batch(
        self, events: Sequence[AnyConversationEvent | AgentStatusChanged | AgentProfileChanged]
    ) -> int:
        """Fold a batch of events (in arrival order) in a few statements; leaves what
        ``apply`` and ``apply_agent_event`` one event at a time leave. How many conversation
        events were new."""
        conversation_events: list[AnyConversationEvent] = []
        agent_events: list[AgentStatusChanged | AgentProfileChanged] = []
        for e in events:
            if isinstance(e, AGENT_EVENTS):
                agent_events.append(e)
            else:
                conversation_events.append(e)
        await self._apply_agent_events(agent_events)
        fresh = await self._claim(conversation_events)
        by_conversation: dict[uuid.UUID, list[AnyConversationEvent]] = {}
        for e in fresh:
            if folded(e):
                by_conversation.setdefault(e.conversation_id, []).append(e)
        if not by_conversation:
            return len(fresh)
        ids = sorted(by_conversation)
        # The batch's read is planned over the tables' size, not the few rows it reads
        # through indexes: past 100,000 conversations its cost crossed jit_above_cost, and
        # compiling it took 150 ms (50,000 conversations) to 870 ms (200,000) of each batch.
        await self.session.execute(text("SET LOCAL jit = off"))
        created = set(
            (
                await self.session.execute(
                    text("""INSERT INTO metrics.conversations (conversation_id, channel)
                            SELECT * FROM unnest(CAST(:ids AS uuid[]),
                                                 CAST(:channels AS text[]))
                            ON CONFLICT DO NOTHING RETURNING conversation_id"""),
                    {"ids": ids, "channels": [by_conversation[i][0].channel.value for i in ids]},
                )
            ).scalars()
        )
        entries = {i: [entry_of(e) for e in by_conversation[i]] for i in ids}
        sinces = {i: since_of(entries[i]) for i in ids}
        # A conversation the batch just created holds nothing yet, and is not read: over a
        # long history its look-ups in the timeline's and the waits' indexes were most of
        # the pages the read did not find in memory.
        stored = [i for i in ids if i not in created]
        if stored:
            kept, calendars = await self._kept(stored, [sinces[i] for i in stored])
        else:
            kept, calendars = {}, await CalendarStore(self.session).calendars()
        for i in created:
            kept[i] = Kept(
                i, by_conversation[i][0].channel.value, Dimensions(), None, None, sinces[i], Fold()
            )
        # The batch's conversations share a few (team, channel) pairs: each calendar is
        # chosen and parsed once per batch, not once per conversation.
        chosen: dict[tuple[str | None, str], BusinessCalendar | None] = {}

        def choose(
            rows: list[dict[str, Any]], *, team: str | None, channel: str
        ) -> BusinessCalendar | None:
            if (team, channel) not in chosen:
                chosen[team, channel] = choose_calendar(rows, team=team, channel=channel)
            return chosen[team, channel]

        plans: list[Plan] = []
        again: list[uuid.UUID] = []
        for i in ids:
            try:
                plans.append(plan(kept[i], by_conversation[i], entries[i], calendars, choose))
            except WholeTimeline:
                again.append(i)
        if again:
            whole, _ = await self._kept(again, [BEGINNING] * len(again))
            for i in again:
                plans.append(plan(whole[i], by_conversation[i], entries[i], calendars, choose))
        await self._write_plans(plans)
        return len(fresh)

    async def _claim(self, events: list[AnyConversationEvent]) -> list[AnyConversationEvent]:
        """Record the events as processed; those not processed before (the first of each id)."""
        if not events:
            return []
        first: dict[uuid.UUID, AnyConversationEvent] = {}
        for e in events:
            first.setdefault(e.event_id, e)
        claimed = sorted(first.values(), key=lambda e: (e.occurred_at, e.event_id))
        new = set(
            (
                await self.session.execute(
                    text("""INSERT INTO metrics.processed_events (occurred_at, event_id)
                            SELECT * FROM unnest(CAST(:ats AS timestamptz[]),
                                                 CAST(:ids AS uuid[]))
                            ON CONFLICT DO NOTHING RETURNING event_id"""),
                    {
                        "ats": [e.occurred_at for e in claimed],
                        "ids": [e.event_id for e in claimed],
                    },
                )
            ).scalars()
        )
        return [e for i, e in first.items() if i in new]

    async def _kept(
        self, ids: list[uuid.UUID], sinces: list[datetime]
    ) -> tuple[dict[uuid.UUID, Kept], list[dict[str, Any]]]:
        """What the store holds of each conversation (locked, in id order) from its ``since``
        on: dimensions, calendar, its latest wait's copy, the fold of the entry before
        ``since`` and the entries at or after it; and every calendar. Each conversation reads
        through the indexes on (conversation, time) and (conversation, seq)."""
        wait_copy = ", ".join(f"w.{k} AS w_{k}" for k in WAIT_COPY)
        rows = (
            await self.session.execute(
                text(f"""SELECT c.conversation_id, c.channel, c.customer_tier, c.priority,
                          c.skill, c.language, c.classified_at, c.calendar,
                          w.seq AS w_seq, {wait_copy},
                          p.event_id AS p_event_id, p.state AS p_state,
                          t.event_ids, t.moments, t.ats, t.agent_ids, t.teams, t.waits,
                          CASE WHEN a.n = 1 THEN
                            (SELECT json_agg(k) FROM metrics.calendars k) END AS calendars
                        FROM unnest(CAST(:ids AS uuid[]), CAST(:sinces AS timestamptz[]))
                          WITH ORDINALITY AS a(id, since, n)
                        JOIN metrics.conversations c ON c.conversation_id = a.id
                        LEFT JOIN LATERAL (
                          SELECT * FROM metrics.waits w WHERE w.conversation_id = a.id
                          ORDER BY w.seq DESC LIMIT 1) w ON true
                        LEFT JOIN LATERAL (
                          SELECT event_id, state FROM metrics.timeline
                          WHERE conversation_id = a.id
                            AND at = (SELECT at FROM metrics.timeline
                                      WHERE conversation_id = a.id AND at < a.since
                                      ORDER BY at DESC LIMIT 1)
                          ORDER BY array_position(ARRAY[{MOMENT_ORDER}], moment) DESC,
                                   coalesce(agent_id, '') COLLATE "C" DESC,
                                   coalesce(team, '') COLLATE "C" DESC, event_id DESC
                          LIMIT 1) p ON true
                        LEFT JOIN LATERAL (
                          SELECT array_agg(event_id) AS event_ids, array_agg(moment) AS moments,
                                 array_agg(at) AS ats, array_agg(agent_id) AS agent_ids,
                                 array_agg(team) AS teams,
                                 array_agg(CAST(state->>'waits' AS integer)) AS waits
                          FROM metrics.timeline
                          WHERE conversation_id = a.id AND at >= a.since) t ON true
                        ORDER BY c.conversation_id
                        FOR UPDATE OF c"""),
                {"ids": ids, "sinces": sinces},
            )
        ).all()
        asked = dict(zip(ids, sinces, strict=True))  # asyncpg reads year 1 back naive
        kept: dict[uuid.UUID, Kept] = {}
        calendars: list[dict[str, Any]] = []
        for r in rows:
            if r.calendars is not None:
                calendars = json_param(r.calendars)
            after = [
                (event_id, Entry(Moment(moment), at, agent_id, team), waits)
                for event_id, moment, at, agent_id, team, waits in zip(
                    r.event_ids or (),
                    r.moments or (),
                    r.ats or (),
                    r.agent_ids or (),
                    r.teams or (),
                    r.waits or (),
                    strict=True,
                )
            ]
            kept[r.conversation_id] = Kept(
                conversation_id=r.conversation_id,
                channel=r.channel,
                dimensions=Dimensions(
                    r.customer_tier, r.priority, r.skill, r.language, r.classified_at
                ),
                calendar=r.calendar,
                wait_copy=None if r.w_seq is None else {k: getattr(r, f"w_{k}") for k in WAIT_COPY},
                since=asked[r.conversation_id],
                before=Fold() if r.p_event_id is None else fold_of(r.p_state),
                after=after,
            )
        return kept, calendars

    async def _write_plans(self, plans: list[Plan]) -> None:
        """Write a batch's plans: one statement per table, and per kind of change to waits."""
        timeline = [row for p in plans for row in p.timeline]
        if timeline:
            await self.session.execute(
                text("""INSERT INTO metrics.timeline
                          (event_id, conversation_id, moment, at, agent_id, team, state)
                        SELECT e, c, m, a, g, t, CAST(s AS jsonb)
                        FROM unnest(CAST(:events AS uuid[]), CAST(:ids AS uuid[]),
                                    CAST(:moments AS text[]), CAST(:ats AS timestamptz[]),
                                    CAST(:agents AS text[]), CAST(:teams AS text[]),
                                    CAST(:states AS text[])) AS u(e, c, m, a, g, t, s)
                        ON CONFLICT (conversation_id, at, event_id)
                        DO UPDATE SET state = excluded.state"""),
                {
                    "events": [r.event_id for r in timeline],
                    "ids": [r.conversation_id for r in timeline],
                    "moments": [r.entry.moment.value for r in timeline],
                    "ats": [r.entry.at for r in timeline],
                    "agents": [r.entry.agent_id for r in timeline],
                    "teams": [r.entry.team for r in timeline],
                    "states": states_json(r.state for r in timeline),
                },
            )
        columns = {name: [getattr(p.facts, name) for p in plans] for name, _ in FACT_COLUMNS} | {
            name: [getattr(p.dimensions, name) for p in plans] for name, _ in DIMENSION_COLUMNS
        }
        columns["calendar"] = [p.calendar for p in plans]
        typed = [*FACT_COLUMNS, *DIMENSION_COLUMNS, ("calendar", "text")]
        await self.session.execute(
            text(f"""UPDATE metrics.conversations c
                     SET {", ".join(f"{n} = u.{n}" for n, _ in typed)}
                     FROM unnest(CAST(:ids AS uuid[]),
                                 {array_columns(typed)})
                       AS u(id, {", ".join(n for n, _ in typed)})
                     WHERE c.conversation_id = u.id"""),
            columns | {"ids": [p.conversation_id for p in plans]},
        )
        deleted = [p for p in plans if p.delete_waits_from is not None]
        if deleted:
            await self.session.execute(
                text("""DELETE FROM metrics.waits w
                        USING unnest(CAST(:ids AS uuid[]), CAST(:seqs AS integer[])) AS d(id, seq)
                        WHERE w.conversation_id = d.id AND w.seq >= d.seq"""),
                {
                    "ids": [p.conversation_id for p in deleted],
                    "seqs": [p.delete_waits_from for p in deleted],
                },
            )
        copied = [p for p in plans if p.copy_waits_below is not None]
        if copied:
            await self.session.execute(
                text(f"""UPDATE metrics.waits w
                         SET {", ".join(f"{n} = u.{n}" for n, _ in WAIT_COPY_COLUMNS)}
                         FROM unnest(CAST(:ids AS uuid[]), CAST(:seqs AS integer[]),
                                     {array_columns(WAIT_COPY_COLUMNS)})
                           AS u(id, seq, {", ".join(n for n, _ in WAIT_COPY_COLUMNS)})
                         WHERE w.conversation_id = u.id AND w.seq < u.seq"""),
                {
                    "ids": [p.conversation_id for p in copied],
                    "seqs": [p.copy_waits_below for p in copied],
                }
                | {n: [p.wait_copy[n] for p in copied] for n, _ in WAIT_COPY_COLUMNS},
            )
        waits = [(p, p.first_wait + i, w) for p in plans for i, w in enumerate(p.waits)]
        if waits:
            names = [n for n, _ in WAIT_ROW_COLUMNS]
            values: dict[str, list[Any]] = {n: [] for n in names}
            for p, seq, w in waits:
                row = p.wait_copy | {"conversation_id": p.conversation_id} | wait_values(w, seq)
                for n in names:
                    values[n].append(row[n])
            await self.session.execute(
                text(f"""INSERT INTO metrics.waits ({", ".join(names)})
                         SELECT * FROM unnest(
                           {array_columns(WAIT_ROW_COLUMNS)})"""),
                values,
            )

    async def _apply_agent_events(
        self, events: list[AgentStatusChanged | AgentProfileChanged]
    ) -> None:
        """Each agent's latest status and profile of the batch, kept if not older than the
        stored one (as applying them in order keeps: the latest time, the last of equal
        times)."""
        latest: dict[tuple[type, str], AgentStatusChanged | AgentProfileChanged] = {}
        for e in events:
            key = (type(e), e.agent_id)
            if key not in latest or latest[key].occurred_at <= e.occurred_at:
                latest[key] = e
        statuses = [e for e in latest.values() if isinstance(e, AgentStatusChanged)]
        profiles = [e for e in latest.values() if isinstance(e, AgentProfileChanged)]
        if statuses:
            await self.session.execute(
                text("""INSERT INTO metrics.agents (agent_id, status, status_at)
                        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[]),
                                             CAST(:ats AS timestamptz[]))
                        ON CONFLICT (agent_id) DO UPDATE SET status = excluded.status,
                          status_at = excluded.status_at
                        WHERE agents.status_at IS NULL OR agents.status_at <= excluded.status_at
                """),
                {
                    "ids": [e.agent_id for e in statuses],
                    "statuses": [e.status.value for e in statuses],
                    "ats": [e.occurred_at for e in statuses],
                },
            )
        if profiles:
            await self.session.execute(
                text("""INSERT INTO metrics.agents (agent_id, team, capacity, profile_at)
                        SELECT i, t, CAST(c AS jsonb), a
                        FROM unnest(CAST(:ids AS text[]), CAST(:teams AS text[]),
                                    CAST(:capacities AS text[]), CAST(:ats AS timestamptz[]))
                          AS u(i, t, c, a)
                        ON CONFLICT (agent_id) DO UPDATE SET team = excluded.team,
                          capacity = excluded.capacity, profile_at = excluded.profile_at
                        WHERE agents.profile_at IS NULL OR agents.profile_at <= excluded.profile_at
                """),
                {
                    "ids": [e.agent_id for e in profiles],
                    "teams": [e.team for e in profiles],
                    "capacities": [json.dumps(e.capacity) for e in profiles],
                    "ats": [e.occurred_at for e in profiles],
                },
            )
