"""SLA crossings: live conversations that used 80% (at risk) and 100% (breached) of their
first-response target are marked once and announced on the conversation-events topic."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.store import MetricsStore
from shared.events import Channel, Priority, SlaAtRisk, SlaBreached, derived_id
from shared.kafka import publish
from shared.settings import Topics

log = logging.getLogger(__name__)

AT_RISK = 0.8


async def sweep_sla(
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    topics: Topics,
    now: datetime,
) -> int:
    """Mark and announce new crossings; the events are published before the marks commit, so a
    crash republishes them (same event ids) rather than losing them."""
    async with sessions() as session, session.begin():
        store = MetricsStore(session)
        events: list[SlaAtRisk | SlaBreached] = []
        for kind, fraction, model in (
            ("at_risk", AT_RISK, SlaAtRisk),
            ("breached", 1.0, SlaBreached),
        ):
            for row in await store.cross(now, kind=kind, fraction=fraction):
                events.append(
                    model(
                        event_id=derived_id(f"sla_{kind}", row["conversation_id"]),
                        occurred_at=now,
                        conversation_id=row["conversation_id"],
                        channel=Channel(row["channel"]),
                        priority=Priority(row["priority"]) if row["priority"] else None,
                        target_s=row["target_s"],
                        elapsed_s=row["elapsed_s"],
                    )
                )
        for event in events:
            await publish(producer, topics.conversation_events, str(event.conversation_id), event)
    return len(events)


async def sla_forever(
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    topics: Topics,
    interval_s: float,
) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            crossed = await sweep_sla(sessions, producer, topics, datetime.now(UTC))
            if crossed:
                log.info("SLA crossings announced", extra={"count": crossed})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("SLA sweep failed", extra={"error": repr(exc)})
