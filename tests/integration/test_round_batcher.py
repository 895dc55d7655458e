"""The producer-side batcher ingest publishes through (shared/kafka.py RoundBatcher), on the
real broker: every record acknowledged lands once, on the partition its key names, in the
order its key's records were added, however many callers add at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from devtools.topics import read_topic
from shared.kafka import RoundBatcher, ensure_topics, key_partitioner, make_producer
from shared.settings import CommonSettings, Topics


async def test_concurrent_callers_records_land_once_in_key_order_on_the_keys_partition(broker):
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap, topics=Topics(namespace=f"rb{uuid.uuid4().hex[:8]}")
    )
    topic = settings.topics.inbound
    await ensure_topics(settings, [topic])
    producer = make_producer(settings)
    await producer.start()
    try:
        batcher = RoundBatcher(producer, topic, timeout_s=10)

        async def caller(key: str, n: int) -> None:
            # One caller's records one after another, as a client that waits for each answer;
            # a large value now and then fills a batch so that the key's next record starts
            # another one.
            for i in range(n):
                value = f"{key}:{i}:".encode() + (b"x" * 20_000 if i % 7 == 3 else b"")
                await batcher.add(key.encode(), value, [("h", b"1")])

        async def burst(key: str) -> None:
            # Added in one go, awaited together: the order must still hold.
            acks = [batcher.add(key.encode(), f"{key}:{i}:".encode(), []) for i in range(30)]
            await asyncio.gather(*acks)

        keys = [f"k{i}" for i in range(40)]
        await asyncio.wait_for(
            asyncio.gather(*(caller(k, 15) for k in keys[:30]), *(burst(k) for k in keys[30:])),
            60,
        )
    finally:
        await producer.stop()

    records = await read_topic(broker.bootstrap, topic)
    partitions = sorted(await _partitions(broker.bootstrap, topic))
    seen: dict[str, list[int]] = {}
    for record in records:
        key = record.key.decode()
        assert record.partition == key_partitioner(record.key, partitions, partitions)
        seen.setdefault(key, []).append(int(record.value.split(b":")[1]))
    assert len(records) == 30 * 15 + 10 * 30
    for key in keys[:30]:
        assert seen[key] == list(range(15)), key
    for key in keys[30:]:
        assert seen[key] == list(range(30)), key


async def test_records_not_acknowledged_in_time_fail_with_a_timeout():
    settings = CommonSettings(kafka_bootstrap="127.0.0.1:9", kafka_request_timeout_ms=1000)
    producer = make_producer(settings)
    batcher = RoundBatcher(producer, "nowhere", timeout_s=0.3)
    acked = batcher.add(b"k", b"v", [])  # a producer that never started: no metadata comes
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(acked, 5)


async def _partitions(bootstrap: str, topic: str) -> set[int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        return consumer.partitions_for_topic(topic) or set()
    finally:
        await consumer.stop()
