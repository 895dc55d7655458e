"""The outbox relay: publishes events that committed transactions left in ``router.outbox``.

One relay at a time (across replicas) publishes: it holds a lease, a row of
``router.relay_lease`` that names it until a time. Each round is three steps, and only the
first and last touch the database, each in a short transaction of its own:

1. renew the lease and read the oldest events (one statement);
2. publish them, a Kafka batch per partition, holding no connection and no lock while the
   broker answers;
3. delete what was published.

Events leave in the order they were written. A relay that stalls past its lease is succeeded
by another, which publishes the same events again; so does a crash between publishing and
deleting. Event ids are stable, so consumers drop the duplicates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.kafka import TopicGuard, key_partitioner
from shared.tracing import kafka_headers

log = logging.getLogger(__name__)

BATCH = 500
# Renewed when less than half of it is left; the holder's own row says it holds it.
_CLAIM = text(
    """
    WITH renewed AS (
        UPDATE router.relay_lease
        SET holder = :me, expires_at = now() + make_interval(secs => :lease_s)
        WHERE id = 1
          AND (holder = :me OR expires_at < now())
          AND expires_at < now() + make_interval(secs => :lease_s / 2)
        RETURNING 1
    ), held AS (
        SELECT 1 FROM router.relay_lease
        WHERE id = 1 AND holder = :me AND expires_at > now()
    )
    SELECT id, topic, key, payload, trace FROM router.outbox
    WHERE EXISTS (SELECT FROM renewed) OR EXISTS (SELECT FROM held)
    ORDER BY id LIMIT :n
    """
)
_FORGET = text("DELETE FROM router.outbox WHERE id = ANY(:ids)")
_RELEASE = text("UPDATE router.relay_lease SET expires_at = now() WHERE id = 1 AND holder = :me")


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        topics: TopicGuard,
        *,
        idle_poll_s: float = 0.5,
        lease_s: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.producer = producer
        self.topics = topics
        self.idle_poll_s = idle_poll_s
        self.lease_s = lease_s
        self.me = f"relay-{uuid.uuid4()}"
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
        """Publish and delete one batch; the number of events published (0 when another
        relay holds the lease)."""
        async with self.sessions() as session, session.begin():
            rows = (
                await session.execute(_CLAIM, {"me": self.me, "lease_s": self.lease_s, "n": BATCH})
            ).all()
        if not rows:
            return 0
        await self.topics.ensure()
        await self._publish(rows)
        async with self.sessions() as session, session.begin():
            await session.execute(_FORGET, {"ids": [r.id for r in rows]})
        self.published += len(rows)
        return len(rows)

    async def release(self) -> None:
        """Give the lease up (on shutdown), so that another replica's relay goes on at once."""
        async with self.sessions() as session, session.begin():
            await session.execute(_RELEASE, {"me": self.me})

    async def _publish(self, rows: Sequence[Row[Any]]) -> None:
        """Each partition's events in order, in as few Kafka batches as they fit; returns when
        the broker has acknowledged them all."""
        # A batch's rows mostly share a few trace contexts: decode each once.
        headers = {t: kafka_headers(json.loads(t) if t else {}) for t in {r.trace for r in rows}}
        partitions = {
            topic: sorted(await self.producer.partitions_for(topic))
            for topic in {r.topic for r in rows}
        }
        open_batches: dict[tuple[str, int], Any] = {}
        acks: list[asyncio.Future[Any]] = []
        for r in rows:
            key = r.key.encode()
            where = (r.topic, key_partitioner(key, partitions[r.topic], partitions[r.topic]))
            fields = {"key": key, "value": r.payload.encode(), "headers": headers[r.trace]}
            batch = open_batches.get(where)
            if batch is None or batch.append(timestamp=None, **fields) is None:
                if batch is not None:  # full: send it, and start the next
                    acks.append(await self._send(batch, where))
                batch = open_batches[where] = self.producer.create_batch()
                batch.append(timestamp=None, **fields)  # an empty batch takes any record
        for where, batch in open_batches.items():
            acks.append(await self._send(batch, where))
        await asyncio.gather(*acks)

    async def _send(self, batch: Any, where: tuple[str, int]) -> asyncio.Future[Any]:
        batch.close()
        topic, partition = where
        future: asyncio.Future[Any] = await self.producer.send_batch(
            batch, topic, partition=partition
        )
        return future
