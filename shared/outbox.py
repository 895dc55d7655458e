"""A transactional outbox: a service's transaction writes the events it produces into its
schema's ``outbox`` table (``enqueue_statement``), and the relay publishes them once committed.
The router's (``router.outbox``) and metrics' (``metrics.outbox``) are the same tables and the
same relay.

One relay at a time (across replicas) publishes a schema's outbox: it holds a lease, the row of
``<schema>.relay_lease`` that names it until a time. Each round is one statement, then the
broker:

1. one statement (its own implicit transaction): delete what the previous round published,
   renew the lease, and read the oldest events;
2. publish them, a Kafka batch per partition, holding no connection and no lock while the
   broker answers.

Events leave in the order they were written. Published events are deleted by the next round
(or on release, at shutdown): at low rates a commit costs the relay one round trip to
PostgreSQL, not two transactions. A relay that stalls past its lease is succeeded by another,
which publishes the same events again; so does a crash before the next round. Event ids are
stable, so consumers drop the duplicates.
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
from pydantic import BaseModel
from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.kafka import TopicGuard, key_partitioner
from shared.tracing import carrier_json, kafka_headers

log = logging.getLogger(__name__)

BATCH = 500
# Renewed when less than half of it is left; the holder's own row says it holds it. The rows
# deleted here are still in the statement's snapshot: they are left out by id.
_ROUND = """
    WITH forgotten AS (
        DELETE FROM {schema}.outbox WHERE id = ANY(CAST(:published AS bigint[]))
    ), renewed AS (
        UPDATE {schema}.relay_lease
        SET holder = :me, expires_at = now() + make_interval(secs => :lease_s)
        WHERE id = 1
          AND (holder = :me OR expires_at < now())
          AND expires_at < now() + make_interval(secs => :lease_s / 2)
        RETURNING 1
    ), held AS (
        SELECT 1 FROM {schema}.relay_lease
        WHERE id = 1 AND holder = :me AND expires_at > now()
    )
    SELECT id, topic, key, payload, trace FROM {schema}.outbox
    WHERE (EXISTS (SELECT FROM renewed) OR EXISTS (SELECT FROM held))
      AND id <> ALL(CAST(:published AS bigint[]))
    ORDER BY id LIMIT :n
    """
_RELEASE = """
    WITH forgotten AS (
        DELETE FROM {schema}.outbox WHERE id = ANY(CAST(:published AS bigint[]))
    )
    UPDATE {schema}.relay_lease SET expires_at = now() WHERE id = 1 AND holder = :me
    """

Outgoing = tuple[str, str, BaseModel, str | None]  # topic, key, event, trace (None: the current)


def enqueue_statement(schema: str, *, notify: str | None = None) -> str:
    """The statement that writes a transaction's events into ``<schema>.outbox``, in one
    round trip, with ``enqueue_params``; with ``notify``, it also notifies that channel (on
    commit) when it wrote any, to wake a relay in another process."""
    insert = f"""INSERT INTO {schema}.outbox (topic, key, payload, trace)
               SELECT t, k, p, r
               FROM unnest(CAST(:topics AS text[]), CAST(:keys AS text[]),
                           CAST(:payloads AS text[]), CAST(:traces AS text[]))
                    AS e(t, k, p, r)"""
    if notify is None:
        return insert
    return f"""WITH written AS ({insert}
               RETURNING 1)
           SELECT pg_notify('{notify}', '') WHERE EXISTS (SELECT FROM written)"""


def enqueue_params(events: Sequence[Outgoing]) -> dict[str, list[str | None]]:
    """``enqueue_statement``'s binds: each event with its trace (none given: the context it
    was made in), in which the relay publishes it."""
    current = carrier_json()
    return {
        "topics": [t for t, _, _, _ in events],
        "keys": [k for _, k, _, _ in events],
        "payloads": [e.model_dump_json() for _, _, e, _ in events],
        "traces": [r or current for _, _, _, r in events],
    }


class OutboxRelay:
    """The relay of ``<schema>.outbox``, publishing while it holds ``<schema>.relay_lease``."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        topics: TopicGuard,
        *,
        schema: str,
        idle_poll_s: float = 0.5,
        lease_s: float = 5.0,
        linger_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.topics = topics
        self.idle_poll_s = idle_poll_s
        self.lease_s = lease_s
        self.linger_s = linger_s
        self.me = f"relay-{uuid.uuid4()}"
        # One text per schema and statement: each is still parsed and prepared once.
        self._round = text(_ROUND.format(schema=schema))
        self._release = text(_RELEASE.format(schema=schema))
        self._wake = asyncio.Event()
        self._unforgotten: list[int] = []  # published, to be deleted by the next round
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
            else:
                # Woken by a commit: let the commits of the next moment join this round (each
                # round is a round trip to PostgreSQL and one to the broker).
                await asyncio.sleep(self.linger_s)
            self._wake.clear()

    async def flush(self) -> int:
        """One round: forget what the last one published, publish the next batch; the number
        of events published (0 when there were none, or another relay holds the lease)."""
        rows = await self._execute(self._round, n=BATCH, lease_s=self.lease_s)
        self._unforgotten = []
        if not rows:
            return 0
        await self.topics.ensure()
        await self._publish(rows)
        self._unforgotten = [r.id for r in rows]
        self.published += len(rows)
        return len(rows)

    async def release(self) -> None:
        """Forget what was published and give the lease up (on shutdown), so that another
        replica's relay goes on at once."""
        await self._execute(self._release)
        self._unforgotten = []

    async def finish(self) -> None:
        """Publish what is left and give the lease up (on shutdown, once ``run`` is stopped);
        what cannot be published waits for the next relay (this one's lease runs out)."""
        try:
            while await self.flush():
                pass
            await self.release()
        except Exception as exc:
            log.warning("outbox relay could not finish", extra={"error": repr(exc)})

    async def _execute(self, statement: TextClause, **params: Any) -> Sequence[Row[Any]]:
        """One statement in a transaction of its own (autocommit: no BEGIN and COMMIT round
        trips); its rows, if it returns any."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            result = await conn.execute(
                statement, {"me": self.me, "published": self._unforgotten, **params}
            )
            return result.all() if result.returns_rows else []

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
