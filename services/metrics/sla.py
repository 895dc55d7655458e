"""SLA crossings: conversations that used 80% (at risk) and 100% (breached) of their
first-response target are marked once and announced on the sla-events topic, through metrics'
outbox: the events are written in the transaction that marks them, and the relay publishes
them once it committed.

The sweep judges at event time: at the earliest time up to which every partition of the
conversation-events topic is folded (``FoldClock``; now, once caught up). While metrics folds
a backlog, a conversation whose reply is still on the topic is not judged past the time the
fold has reached, so it is never announced as breached when it was answered within target;
one whose reply came late (or that was resolved after its target without one) is announced
when that is folded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.sla_store import SlaStore
from shared.events import Channel, Priority, SlaAtRisk, SlaBreached
from shared.ids import derived_id
from shared.outbox import OutboxRelay
from shared.settings import Topics

log = logging.getLogger(__name__)

AT_RISK = 0.8
Crossing = SlaAtRisk | SlaBreached


def crossing(kind: str, row: Mapping[str, Any]) -> Crossing:
    """The event announcing a marked crossing; it happened when the target's share ran out."""
    model = SlaAtRisk if kind == "at_risk" else SlaBreached
    return model(
        event_id=derived_id(f"sla_{kind}", row["conversation_id"]),
        occurred_at=row["crossed_at"],
        conversation_id=row["conversation_id"],
        channel=Channel(row["channel"]),
        priority=Priority(row["priority"]) if row["priority"] else None,
        target_s=row["target_s"],
        elapsed_s=row["elapsed_s"],
    )


async def crossings(sla: SlaStore, topic: str, now: datetime) -> list[Crossing]:
    """Mark the crossings due at the sweep's clock (none before any partition is known)."""
    swept_to, clock = await sla.clock(topic, now)
    if clock is None:
        return []
    events = [
        crossing(kind, row)
        for kind, fraction in (("at_risk", AT_RISK), ("breached", 1.0))
        for row in await sla.cross_live(clock, kind=kind, fraction=fraction)
    ]
    if swept_to is not None and clock > swept_to:
        events += [
            crossing("breached", row)
            for rows in (
                await sla.cross_answered(swept_to, clock),
                await sla.cross_resolved_unanswered(swept_to, clock),
            )
            for row in rows
        ]
    await sla.swept(clock)
    return events


async def sweep_sla(
    sessions: async_sessionmaker[AsyncSession],
    topics: Topics,
    now: datetime,
    folded_to: Mapping[int, datetime],
) -> int:
    """Record how far this process folded (``folded_to`` per partition), then mark new
    crossings and leave their events in metrics' outbox, in one transaction: they are
    published (by the relay) only if the marks commit. The number of crossings."""
    async with sessions() as session, session.begin():
        sla = SlaStore(session)
        await sla.advance_fold_clock(topics.conversation_events, folded_to)
        events = await crossings(sla, topics.conversation_events, now)
        await sla.announce([(topics.sla_events, str(e.conversation_id), e, None) for e in events])
    return len(events)


async def sla_forever(
    sessions: async_sessionmaker[AsyncSession],
    relay: OutboxRelay,
    topics: Topics,
    interval_s: float,
    folded_to: Callable[[datetime], Awaitable[Mapping[int, datetime]]],
) -> None:
    """Sweep every ``interval_s``, waking ``relay`` after a sweep that left events;
    ``folded_to(now)``: how far this process folded."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            now = datetime.now(UTC)
            crossed = await sweep_sla(sessions, topics, now, await folded_to(now))
            if crossed:
                relay.wake()
                log.info("SLA crossings marked", extra={"count": crossed})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("SLA sweep failed", extra={"error": repr(exc)})
