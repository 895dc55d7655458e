"""SLA statements: the policies, the live conversations at risk, and the sweep's clock (the
event time folded on every partition) and the crossings it marks. The sweep's reads go through
a partial index on the conversations that can still cross (migration 0018), never the whole
history. Nothing here commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.outbox import Outgoing, enqueue_params, enqueue_statement

OUTBOX_SCHEMA = "metrics"  # metrics.outbox, metrics.relay_lease
_ENQUEUE = text(enqueue_statement(OUTBOX_SCHEMA))

# The SLA policy of a conversation: its priority's policy for its channel, else for any ('*').
TARGET_JOIN = """LEFT JOIN metrics.sla_policies ps
            ON ps.priority = c.priority AND ps.channel = c.channel
        LEFT JOIN metrics.sla_policies pa ON pa.priority = c.priority AND pa.channel = '*'"""
FRT_TARGET = "coalesce(ps.first_response_target_s, pa.first_response_target_s)"
LIVE = "opened_at IS NOT NULL AND first_response_at IS NULL AND resolved_at IS NULL"

COLUMNS = {"at_risk": "sla_at_risk_at", "breached": "sla_breached_at"}
# When a conversation crossed ``fraction`` of its target: the event time of the crossing.
_CROSSED = f"c.first_message_at + make_interval(secs => :fraction * {FRT_TARGET})"


class SlaStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def announce(self, events: Sequence[Outgoing]) -> None:
        """Leave events in metrics' outbox, published by its relay once this commits."""
        if events:
            await self.session.execute(_ENQUEUE, enqueue_params(events))

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

    async def advance_fold_clock(self, topic: str, folded_to: Mapping[int, datetime]) -> None:
        """Record that the events of these partitions are folded up to these event times (a
        clock never goes back)."""
        if not folded_to:
            return
        partitions = sorted(folded_to)
        await self.session.execute(
            text("""INSERT INTO metrics.fold_clock (topic, partition, folded_to)
                    SELECT :topic, p, t FROM unnest(CAST(:partitions AS integer[]),
                                                    CAST(:times AS timestamptz[])) AS u(p, t)
                    ON CONFLICT (topic, partition) DO UPDATE
                    SET folded_to = greatest(fold_clock.folded_to, excluded.folded_to)"""),
            {
                "topic": topic,
                "partitions": partitions,
                "times": [folded_to[p] for p in partitions],
            },
        )

    async def clock(self, topic: str, now: datetime) -> tuple[datetime | None, datetime | None]:
        """Lock the sweep (replicas sweep one at a time) and read its clocks: the one the
        previous sweep judged at, and now's, the earliest event time folded on any partition
        of ``topic`` (never past ``now``; None before any partition is known)."""
        row = (
            await self.session.execute(
                text("""SELECT s.swept_to,
                          (SELECT least(min(folded_to), :now) FROM metrics.fold_clock
                           WHERE topic = :topic) AS clock
                        FROM metrics.sla_sweep s FOR UPDATE OF s"""),
                {"topic": topic, "now": now},
            )
        ).one()
        return row.swept_to, row.clock

    async def swept(self, clock: datetime) -> None:
        await self.session.execute(
            text("UPDATE metrics.sla_sweep SET swept_to = greatest(swept_to, :clock)"),
            {"clock": clock},
        )

    async def cross_live(
        self, clock: datetime, *, kind: str, fraction: float
    ) -> list[dict[str, Any]]:
        """Mark (once) the conversations still awaiting their first reply at ``clock`` that had
        used ``fraction`` of their first-response target by then; ``kind``: at_risk or
        breached. Concurrent replicas each mark different ones."""
        column = COLUMNS[kind]
        return await self._mark(
            column,
            f"""SELECT c.conversation_id, {FRT_TARGET} AS target_s, {_CROSSED} AS crossed_at,
                       date_part('epoch', :clock - c.first_message_at) AS elapsed_s
                FROM metrics.conversations c {TARGET_JOIN}
                WHERE {LIVE} AND c.{column} IS NULL AND {FRT_TARGET} IS NOT NULL
                  AND {_CROSSED} <= :clock
                FOR UPDATE OF c SKIP LOCKED""",
            {"clock": clock, "fraction": fraction},
        )

    async def cross_answered(self, after: datetime, clock: datetime) -> list[dict[str, Any]]:
        """Mark (once) as breached the conversations whose first reply, folded since the
        previous sweep (replied in (after, clock]), came after their target: a backlog folds
        the message and the late reply together, and the breach was real all the same."""
        return await self._mark(
            "sla_breached_at",
            f"""SELECT c.conversation_id, {FRT_TARGET} AS target_s, {_CROSSED} AS crossed_at,
                       date_part('epoch', c.first_response_at - c.first_message_at) AS elapsed_s
                FROM metrics.conversations c {TARGET_JOIN}
                WHERE c.sla_breached_at IS NULL AND c.first_response_at IS NOT NULL
                  AND c.first_response_at > :after AND c.first_response_at <= :clock
                  AND {FRT_TARGET} IS NOT NULL AND c.first_response_at > {_CROSSED}
                FOR UPDATE OF c SKIP LOCKED""",
            {"after": after, "clock": clock, "fraction": 1.0},
        )

    async def cross_resolved_unanswered(
        self, after: datetime, clock: datetime
    ) -> list[dict[str, Any]]:
        """Mark (once) as breached the conversations resolved without a reply since the
        previous sweep (in (after, clock]) after their target had run out."""
        return await self._mark(
            "sla_breached_at",
            f"""SELECT c.conversation_id, {FRT_TARGET} AS target_s, {_CROSSED} AS crossed_at,
                       date_part('epoch', c.resolved_at - c.first_message_at) AS elapsed_s
                FROM metrics.conversations c {TARGET_JOIN}
                WHERE c.first_response_at IS NULL AND c.sla_breached_at IS NULL
                  AND c.resolved_at IS NOT NULL AND c.opened_at IS NOT NULL
                  AND c.resolved_at > :after AND c.resolved_at <= :clock
                  AND {FRT_TARGET} IS NOT NULL AND c.resolved_at > {_CROSSED}
                FOR UPDATE OF c SKIP LOCKED""",
            {"after": after, "clock": clock, "fraction": 1.0},
        )

    async def _mark(self, column: str, due: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = await self.session.execute(
            text(f"""UPDATE metrics.conversations u SET {column} = due.crossed_at
                     FROM ({due}) due
                     WHERE u.conversation_id = due.conversation_id
                     RETURNING u.conversation_id, u.channel, u.priority, due.target_s,
                               due.elapsed_s, due.crossed_at"""),
            params,
        )
        return [dict(r._mapping) for r in rows]
