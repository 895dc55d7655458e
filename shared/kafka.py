"""Kafka clients as every service builds them: acks=all producers with the Java client's key
partitioning, group consumers with manual commits, topics created where missing, and
publishing one event. The consume loops that drive consumers are in ``shared/consume.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from functools import lru_cache

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from pydantic import BaseModel

from shared.settings import CommonSettings
from shared.tracing import kafka_headers


@lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def key_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (murmur2, as the Java client, so every client puts a key
    on the same partition) with each key's hash remembered: aiokafka computes it in pure
    Python, and a conversation's key is published again with each of its events."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


def make_producer(settings: CommonSettings) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (the idempotent producer is not used:
    the local broker does not support it, and consumers deduplicate on event ids instead)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=1,
        partitioner=key_partitioner,
        client_id=f"switchboard-{settings.environment}",
    )


def make_consumer(
    settings: CommonSettings, *topics: str, group_id: str, fetch_max_wait_ms: int | None = None
) -> AIOKafkaConsumer:
    """A group consumer with manual commits, starting from the earliest offset for a new group
    (``fetch_max_wait_ms``: for a topic whose latency matters less than the setting's)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms or settings.kafka_fetch_max_wait_ms,
        request_timeout_ms=max(settings.kafka_request_timeout_ms, 40_000),
        max_poll_records=500,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(settings.kafka_session_timeout_ms // 3, 100),
    )


async def ensure_topics(settings: CommonSettings, topics: Iterable[str] | None = None) -> None:
    """Create the topics that do not exist yet (development; production creates them in deploy/)."""
    names = list(topics) if topics is not None else settings.topics.all()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, settings.kafka_partitions, 1) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another service created it between our list and create
    finally:
        await admin.close()


class TopicGuard:
    """Whether this service's topics are known to exist since the broker last failed us.

    A broker that lost its topics (the local, memory-backed one, after a restart) may
    acknowledge writes to a partition it no longer lists, and never serve them: before the
    next write after any broker failure, and at least every ``max_age_s`` of writing, the
    topics are checked (and created where missing). Production Kafka keeps its topics across
    restarts; there the check is one cheap metadata request."""

    def __init__(
        self,
        settings: CommonSettings,
        topics: Iterable[str] | None = None,
        *,
        max_age_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.topics = list(topics) if topics is not None else settings.topics.all()
        self.max_age_s = max_age_s
        self._checked_at: float | None = time.monotonic()
        # One check at a time: without it, every request arriving during a check started
        # its own (measured: a burst of admin clients at 1,000 requests a second).
        self._checking = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def verified(self) -> bool:
        return self._checked_at is not None and time.monotonic() - self._checked_at < self.max_age_s

    def broker_failed(self) -> None:
        self._checked_at = None

    async def ensure_soon(self) -> None:
        """For a request's path: wait for the check only after a broker failure; when the
        last check is merely old, start the next one in the background and go on. A write
        meanwhile is as safe as one a moment before the check fell due, and no request waits
        for an admin client every ``max_age_s`` (each did: ingest's p99 under load)."""
        if self.verified:
            return
        if self._checked_at is None:
            await self.ensure()
        elif self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            await self.ensure()
        except (KafkaError, TimeoutError, OSError):
            self.broker_failed()  # the next write waits for a check
        finally:
            self._refreshing = None

    async def ensure(self) -> None:
        """Check (and create) the topics if the broker failed or the last check is old."""
        if self.verified:
            return
        async with self._checking:
            if not self.verified:  # another caller may have checked meanwhile
                await ensure_topics(self.settings, self.topics)
                self._checked_at = time.monotonic()


async def broker_reachable(producer: AIOKafkaProducer, timeout: float = 2.0) -> bool:
    """Whether the broker answers a metadata request within ``timeout`` seconds."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
    except (KafkaError, TimeoutError, OSError):
        return False
    return True


async def publish(producer: AIOKafkaProducer, topic: str, key: str, event: BaseModel) -> None:
    """Publish ``event`` as JSON and wait for the broker's acknowledgement."""
    await producer.send_and_wait(
        topic, event.model_dump_json().encode(), key=key.encode(), headers=kafka_headers()
    )


Headers = list[tuple[str, bytes]]
Record = tuple[bytes, bytes, Headers, "asyncio.Future[None]"]
Waiting = list["asyncio.Future[None]"]


class RoundBatcher:
    """Publishes to one topic, as one batch per partition, the records every caller adds
    while the previous batches are on their way, and answers each caller once the broker has
    acknowledged its record.

    Publishing each record with ``AIOKafkaProducer.send`` under its own ``asyncio.timeout``
    was a sixth of ingest's CPU per message (profiled: ``send`` builds the topic's partition
    set, serializes, partitions and makes a future per record; issue 14). Here a record costs
    a future and a list append; partitioning (``key_partitioner``, as ``make_producer``'s
    producers use, so a key lands where ``send`` would put it) and building the batches are
    done once per round, by one task. One round is in flight at a time: what arrives
    meanwhile waits for the next, so batches grow with the load rather than one per turn of
    the loop (which measured worse than ``send``: a produce request per few records). A
    record fails with TimeoutError when ``timeout_s`` after the first record of its round was
    added it is not acknowledged. Records of one partition keep the order they were added in."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, timeout_s: float) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s
        self._pending: list[Record] = []
        self._pending_since = 0.0
        self._sending: asyncio.Task[None] | None = None

    def add(self, key: bytes, value: bytes, headers: Headers) -> asyncio.Future[None]:
        """Queue one record; the future is done once the broker has it (or failed with why)."""
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            self._pending_since = loop.time()
        self._pending.append((key, value, headers, acked))
        if self._sending is None:  # the task's first step runs after this turn's adds
            self._sending = loop.create_task(self._send_rounds())
        return acked

    async def _send_rounds(self) -> None:
        try:
            while self._pending:
                records, since, self._pending = self._pending, self._pending_since, []
                await self._round(records, since + self.timeout_s)
        finally:
            self._sending = None

    async def _round(self, records: list[Record], deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                submitted = await self._submit(records)
                # Each batch answers its own callers: one partition's failure does not fail
                # records another partition's batch has delivered (their callers would retry
                # and publish them twice).
                outcomes = await asyncio.gather(*(a for a, _ in submitted), return_exceptions=True)
                for (_, waiting), outcome in zip(submitted, outcomes, strict=True):
                    for acked in waiting:
                        if acked.done():
                            continue
                        if isinstance(outcome, BaseException):
                            acked.set_exception(outcome)
                        else:
                            acked.set_result(None)
        except asyncio.CancelledError:
            for *_, acked in records:
                acked.cancel()
            raise
        except Exception as exc:  # every record not yet acknowledged fails with it
            for *_, acked in records:
                if not acked.done():
                    acked.set_exception(exc)

    async def _submit(self, records: list[Record]) -> list[tuple[asyncio.Future[object], Waiting]]:
        """Hand the records to the producer as batches, partition by partition, each in the
        order added; each batch's acknowledgement with the callers waiting on it."""
        everyone = sorted(await self.producer.partitions_for(self.topic))
        batches: dict[int, list[tuple[BatchBuilder, Waiting]]] = {}
        for key, value, headers, acked in records:
            filling = batches.setdefault(key_partitioner(key, everyone, everyone), [])
            record = {"timestamp": None, "key": key, "value": value, "headers": headers}
            if not filling or filling[-1][0].append(**record) is None:  # None: it is full
                builder = self.producer.create_batch()
                builder.append(**record)  # an empty batch takes any record
                filling.append((builder, []))
            filling[-1][1].append(acked)
        submitted = []
        for partition, built in batches.items():
            for builder, waiting in built:
                ack = await self.producer.send_batch(builder, self.topic, partition=partition)
                submitted.append((ack, waiting))
        return submitted
