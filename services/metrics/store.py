"""Folding the desk's facts one at a time: a conversation event into the conversation's facts,
timeline and waits (``refresh`` folds one anew after a calendar changed), an agent event into
the agent's latest status and profile, and a CSAT score. ``fold_store.py`` folds a batch;
metrics' other statements are in the sibling ``*_store.py`` modules, one per concern.
Nothing here commits: the caller's transaction does."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.calendar_store import choose_calendar
from services.metrics.facts import (
    Entry,
    Facts,
    Fold,
    Moment,
    Wait,
    conclude,
    refold,
    timed,
    timeline_order,
)
from services.metrics.fold_batch import BEGINNING, END, moment_of
from services.metrics.rows import fold_of, json_param, json_ready, wait_values
from shared.events import (
    AgentProfileChanged,
    AgentStatusChanged,
    AnyConversationEvent,
    Classified,
    ConversationOpened,
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

# Moments in the order facts.timeline_order breaks ties.
MOMENT_ORDER = ", ".join(f"'{m.value}'" for m in Moment)


def _wait_copy(f: Facts, conversation: Any) -> dict[str, Any]:
    """What each wait copies of its conversation, so that a report scans one table."""
    dims = ("channel", "priority", "skill", "language", "customer_tier")
    return {d: getattr(conversation, d) for d in dims} | {"opened_at": f.opened_at, "team": f.team}


class MetricsStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def apply(self, event: AnyConversationEvent) -> bool:
        """Fold one event into the facts; False if it was already applied."""
        first_time = await self.session.scalar(
            text("""INSERT INTO metrics.processed_events (occurred_at, event_id)
                    VALUES (:at, :id) ON CONFLICT DO NOTHING RETURNING event_id"""),
            {"at": event.occurred_at, "id": event.event_id},
        )
        if first_time is None:
            return False
        moment, dimensions = moment_of(event), _DIMENSIONS_SQL.get(type(event))
        if moment is None and dimensions is None:
            return True  # nothing a report or live view shows (escalations, early overflows)
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
                text("""INSERT INTO metrics.timeline (event_id, conversation_id, moment, at,
                                                      agent_id, team)
                        VALUES (:event, :id, :moment, :at, :agent, :team)"""),
                {
                    "event": event.event_id,
                    "id": event.conversation_id,
                    "moment": moment.value,
                    "at": event.occurred_at,
                    "agent": getattr(event, "agent_id", None),
                    "team": getattr(event, "team", None),
                },
            )
        # An event without a moment changes only dimensions: nothing to fold again.
        await self._fold(
            event.conversation_id,
            since=event.occurred_at if moment else END,
            new=event.event_id if moment else None,
        )
        return True

    async def refresh(self, conversation_id: uuid.UUID) -> Facts:
        """Derive a conversation's facts anew from its whole timeline and write them, with its
        waits (after a calendar changed)."""
        return await self._fold(conversation_id, since=None)

    async def _fold(
        self, conversation_id: uuid.UUID, *, since: datetime | None, new: uuid.UUID | None = None
    ) -> Facts:
        """Fold the timeline entries at or after ``since`` (all when None) from the fold kept
        on the entry before them, and write the facts, the entries' folds and the waits they
        answered; the facts (with the waits answered from ``since`` on). ``new``: the entry
        just added, the one without a fold yet. An entry that arrives in order reads itself
        and the one before it, whatever the conversation's length. The conversation's row is
        locked first, so a concurrent fold (a calendar
        change) waits for this one and then sees its timeline."""
        row = (
            await self.session.execute(
                text("""SELECT c.channel, c.priority, c.skill, c.language, c.customer_tier,
                          c.calendar,
                          (SELECT json_agg(k) FROM metrics.calendars k
                           WHERE c.channel = ANY(k.channels) OR cardinality(k.teams) > 0)
                            AS calendars,
                          w.opened_at AS w_opened_at,
                          w.channel AS w_channel, w.priority AS w_priority,
                          w.skill AS w_skill, w.language AS w_language,
                          w.customer_tier AS w_customer_tier, w.team AS w_team
                        FROM metrics.conversations c
                        LEFT JOIN LATERAL (
                          SELECT * FROM metrics.waits w
                          WHERE w.conversation_id = c.conversation_id
                          ORDER BY w.seq DESC LIMIT 1) w ON true
                        WHERE c.conversation_id = :id FOR UPDATE OF c"""),
                {"id": conversation_id},
            )
        ).one()
        before, rows = await self._timeline_from(conversation_id, since)
        if before is None or any(old is None and e != new for e, _, old in rows):
            # Entries from before folds were kept: fold them all once (an entry after
            # ``since`` without its fold does not say which waits it answered).
            since = None
            before, rows = await self._timeline_from(conversation_id, since)
        assert before is not None
        folds, answers = refold(before, [entry for _, entry, _ in rows])
        last = folds[-1] if folds else before
        calendars = json_param(row.calendars) or []
        calendar = choose_calendar(calendars, team=last.team, channel=row.channel)
        if since is not None and (calendar.name if calendar else None) != row.calendar:
            return await self._fold(conversation_id, since=None)  # time every wait again
        waits = [timed(a, calendar) for a in answers]
        facts = conclude(last, waits, calendar)
        await self._write(conversation_id, facts, calendar.name if calendar else None)
        if rows:
            await self.session.execute(
                # The entries read are those from ``since`` on: through the primary key
                # (conversation, time, event) by that range, whatever the table's statistics
                # (a list of instants, or a join on the entries, read the whole conversation).
                text("""UPDATE metrics.timeline SET state = CAST(
                          (CAST(:states AS text[]))[array_position(CAST(:events AS uuid[]),
                                                                   event_id)] AS jsonb)
                        WHERE conversation_id = :id AND at BETWEEN :first AND :last
                          AND event_id = ANY(CAST(:events AS uuid[]))"""),
                {
                    "id": conversation_id,
                    "first": min(entry.at for _, entry, _ in rows),
                    "last": max(entry.at for _, entry, _ in rows),
                    "events": [event_id for event_id, _, _ in rows],
                    "states": [json.dumps(json_ready(dataclasses.asdict(f))) for f in folds],
                },
            )
        # Waits before ``since`` stay; those after it were answered again.
        first = before.waits
        answered = max((old.waits for _, _, old in rows if old is not None), default=first)
        if since is None or answered > first:
            await self.session.execute(
                text("DELETE FROM metrics.waits WHERE conversation_id = :id AND seq >= :seq"),
                {"id": conversation_id, "seq": first},
            )
        copy = _wait_copy(facts, row)
        copied = {k: getattr(row, f"w_{k}") for k in copy}
        if since is not None and first > 0 and copied != copy:
            # The conversation's dimensions, opening or team changed: its waits copy them.
            await self.session.execute(
                text("""UPDATE metrics.waits SET opened_at = :opened_at, channel = :channel,
                          priority = :priority, skill = :skill, language = :language,
                          customer_tier = :customer_tier, team = :team
                        WHERE conversation_id = :id AND seq < :seq"""),
                copy | {"id": conversation_id, "seq": first},
            )
        if waits:
            await self._insert_waits(conversation_id, copy, waits, first)
        return facts

    async def _timeline_from(
        self, conversation_id: uuid.UUID, since: datetime | None
    ) -> tuple[Fold | None, list[tuple[uuid.UUID, Entry, Fold | None]]]:
        """The fold kept on the last timeline entry before ``since`` (an empty fold when there
        is none, None when that entry has none kept), and the entries at or after ``since`` in
        timeline order with their folds. Reads one entry through the index on (conversation,
        time), and those at or after ``since``."""
        rows = (
            await self.session.execute(
                # The last instant before ``since`` comes from the index (ORDER BY ... LIMIT, as
                # a plan made for a small table reads every entry for max()); the entries at
                # that instant are then ordered as the fold orders them.
                text(f"""(SELECT event_id, moment, at, agent_id, team, state, true AS before
                          FROM metrics.timeline
                          WHERE conversation_id = :id
                            AND at = (SELECT at FROM metrics.timeline
                                      WHERE conversation_id = :id AND at < :since
                                      ORDER BY at DESC LIMIT 1)
                          ORDER BY array_position(ARRAY[{MOMENT_ORDER}], moment) DESC,
                                   coalesce(agent_id, '') COLLATE "C" DESC,
                                   coalesce(team, '') COLLATE "C" DESC, event_id DESC
                          LIMIT 1)
                         UNION ALL
                         SELECT event_id, moment, at, agent_id, team, state, false
                         FROM metrics.timeline WHERE conversation_id = :id AND at >= :since"""),
                {"id": conversation_id, "since": since or BEGINNING},
            )
        ).all()
        previous = [r for r in rows if r.before]
        before = fold_of(previous[0].state) if previous else Fold()
        after = sorted(
            (
                (r.event_id, Entry(Moment(r.moment), r.at, r.agent_id, r.team), fold_of(r.state))
                for r in rows
                if not r.before
            ),
            key=lambda r: (*timeline_order(r[1]), r[0]),
        )
        return before, after

    async def _write(self, conversation_id: uuid.UUID, f: Facts, calendar: str | None) -> None:
        await self.session.execute(
            text("""UPDATE metrics.conversations SET
                      opened_at = :opened_at, first_message_at = :first_message_at,
                      first_assigned_at = :first_assigned_at,
                      first_response_at = :first_response_at, resolved_at = :resolved_at,
                      agent_id = :agent_id, team = :team, assignments = :assignments,
                      reopens = :reopens, customer_messages = :customer_messages,
                      agent_replies = :agent_replies,
                      held_by = :held_by, queued_since = :queued_since,
                      stuck_since = :stuck_since,
                      resolution_s = :resolution_s, resolution_bs = :resolution_bs,
                      queue_wait_s = :queue_wait_s, queue_wait_bs = :queue_wait_bs,
                      calendar = :calendar
                    WHERE conversation_id = :id"""),
            {
                "id": conversation_id,
                "calendar": calendar,
                **{
                    k: getattr(f, k)
                    for k in (
                        "opened_at first_message_at first_assigned_at first_response_at "
                        "resolved_at agent_id team assignments reopens customer_messages "
                        "agent_replies held_by queued_since stuck_since resolution_s "
                        "resolution_bs "
                        "queue_wait_s queue_wait_bs"
                    ).split()
                },
            },
        )

    async def _insert_waits(
        self,
        conversation_id: uuid.UUID,
        copy: dict[str, Any],
        waits: Sequence[Wait],
        first_seq: int,
    ) -> None:
        shared = copy | {"id": conversation_id}
        await self.session.execute(
            text("""INSERT INTO metrics.waits
                      (conversation_id, seq, kind, episode, started_at, replied_at, seconds,
                       business_seconds, opened_at, channel, priority, skill, language,
                       agent_id, customer_tier, team)
                    VALUES (:id, :seq, :kind, :episode, :started_at, :replied_at, :seconds,
                            :business_seconds, :opened_at, :channel, :priority, :skill,
                            :language, :agent_id, :customer_tier, :team)"""),
            [shared | wait_values(w, first_seq + i) for i, w in enumerate(waits)],
        )

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

    # ------------------------------------------------------------ CSAT

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
