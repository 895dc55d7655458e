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

    @property
    def verified(self) -> bool:
        return self._checked_at is not None and time.monotonic() - self._checked_at < self.max_age_s

    def broker_failed(self) -> None:
        self._checked_at = None

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
