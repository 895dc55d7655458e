"""The outbox relay: publishes events that committed transactions left in ``router.outbox``.

One relay at a time (across replicas) holds a transaction-scoped advisory lock, so events leave
in the order they were written. A crash between publishing and deleting republishes a batch;
event ids are stable, so consumers drop the duplicates.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.kafka import TopicGuard
from shared.tracing import kafka_headers

log = logging.getLogger(__name__)

_LOCK_KEY = 0x5B0A4D  # advisory lock id of the relay
BATCH = 500


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        topics: TopicGuard,
        *,
        idle_poll_s: float = 0.5,
    ) -> None:
        self.sessions = sessions
        self.producer = producer
        self.topics = topics
        self.idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        """A transaction with events has committed: publish now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self.flush() == BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, KafkaError | OSError | TimeoutError):
                    self.topics.broker_failed()
                log.warning("outbox relay failed, will retry", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(self._wake.wait(), self.idle_poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def flush(self) -> int:
        """Publish and delete one batch; the number of events published."""
        async with self.sessions() as session, session.begin():
            locked = await session.scalar(text(f"SELECT pg_try_advisory_xact_lock({_LOCK_KEY})"))
            if not locked:
                return 0
            rows = (
                await session.execute(
                    text(
                        "SELECT id, topic, key, payload, trace FROM router.outbox "
                        "ORDER BY id LIMIT :n"
                    ),
                    {"n": BATCH},
                )
            ).all()
            if not rows:
                return 0
            await self.topics.ensure()
            # A batch's rows mostly share a few trace contexts: decode each once.
            traces = {r.trace for r in rows}
            headers = {t: kafka_headers(json.loads(t) if t else {}) for t in traces}
            sent = [
                await self.producer.send(
                    r.topic, r.payload.encode(), key=r.key.encode(), headers=headers[r.trace]
                )
                for r in rows
            ]
            await asyncio.gather(*sent)
            await session.execute(
                text("DELETE FROM router.outbox WHERE id = ANY(:ids)"),
                {"ids": [r.id for r in rows]},
            )
        self.published += len(rows)
        return len(rows)
