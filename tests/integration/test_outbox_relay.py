"""The outbox relay against the real broker and database: events leave in the order they were
written, one relay publishes at a time, and none holds a connection while the broker answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import text

from devtools.topics import read_topic
from services.router.app import create_app
from services.router.outbox import OUTBOX_SCHEMA
from services.router.relay import run_relay
from services.router.settings import RouterSettings
from shared.db import make_engine
from shared.kafka import TopicGuard, ensure_topics, make_producer
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings, Topics
from tests.conftest import eventually, running
from tests.integration.routerkit import put_agent

pytestmark = pytest.mark.asyncio


class WatchedProducer:
    """The real producer; each batch handed to it notes how many pooled connections were
    checked out at that moment."""

    def __init__(self, producer: Any, pool: Any) -> None:
        self.producer = producer
        self.pool = pool
        self.checked_out: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.checked_out.append(self.pool.checkedout())
        return await self.producer.send_batch(batch, topic, partition=partition)


async def _write(engine: Any, topic: str, events: list[tuple[str, int]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO router.outbox (topic, key, payload) "
                "SELECT :topic, k, p FROM unnest(CAST(:keys AS text[]), CAST(:payloads AS text[]))"
                " AS t(k, p)"
            ),
            {
                "topic": topic,
                "keys": [k for k, _ in events],
                "payloads": [json.dumps({"key": k, "n": n}) for k, n in events],
            },
        )


async def _waiting(engine: Any) -> list[int]:
    """The numbers of the events in the outbox."""
    async with engine.connect() as conn:
        payloads = (await conn.execute(text("SELECT payload FROM router.outbox"))).scalars()
        return [json.loads(p)["n"] for p in payloads]


async def _outbox(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM router.outbox"))).scalar_one())


@pytest.fixture
async def relay_parts(broker: Any, database_url: str, topics: Topics) -> Any:
    settings = CommonSettings(kafka_bootstrap=broker.bootstrap, topics=topics)
    await ensure_topics(settings)
    engine = make_engine(database_url, pool_size=2)
    producer = make_producer(settings)
    await producer.start()
    yield settings, engine, producer
    await producer.stop()
    await engine.dispose()


async def test_events_leave_in_order_while_no_connection_is_held(
    broker: Any, relay_parts: Any
) -> None:
    settings, engine, producer = relay_parts
    topic = settings.topics.conversation_events
    # More than a relay batch, over a few keys: each key's events must arrive in order.
    events = [(f"conv-{i % 7}", i) for i in range(1_200)]
    await _write(engine, topic, events)
    watched = WatchedProducer(producer, engine.pool)
    relay = OutboxRelay(engine, watched, TopicGuard(settings), schema=OUTBOX_SCHEMA)

    published = 0
    while count := await relay.flush():
        published += count

    assert published == 1_200
    assert await _outbox(engine) == 0
    assert watched.checked_out and set(watched.checked_out) == {0}
    records = await read_topic(broker.bootstrap, topic)
    by_key: dict[str, list[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key.decode(), []).append(json.loads(r.value)["n"])
    assert sum(map(len, by_key.values())) == 1_200
    for key, ns in by_key.items():
        assert ns == sorted(ns), f"{key}'s events out of order"
        assert ns == [n for k, n in events if k == key]


async def test_one_relay_publishes_at_a_time_and_a_successor_takes_over(
    broker: Any, relay_parts: Any
) -> None:
    settings, engine, producer = relay_parts
    topic = settings.topics.conversation_events
    guard = TopicGuard(settings)
    first = OutboxRelay(engine, producer, guard, schema=OUTBOX_SCHEMA, lease_s=1.0)
    second = OutboxRelay(engine, producer, guard, schema=OUTBOX_SCHEMA, lease_s=1.0)

    await _write(engine, topic, [("a", 1)])
    assert await first.flush() == 1
    await _write(engine, topic, [("a", 2)])
    # The first relay holds the lease: the second publishes nothing, and the event stays.
    assert await second.flush() == 0
    assert 2 in await _waiting(engine)

    # A relay that stops gives the lease up: its successor goes on at once.
    await first.release()
    assert await second.flush() == 1

    # A relay that dies leaves its lease to expire; then another takes over, and publishes
    # again what the dead one published last without deleting it (consumers drop the
    # duplicate by event id).
    await _write(engine, topic, [("a", 3)])
    assert await first.flush() == 0
    await asyncio.sleep(1.1)
    assert await first.flush() == 2
    assert await first.flush() == 0
    assert await _outbox(engine) == 0
    values = [json.loads(r.value)["n"] for r in await read_topic(broker.bootstrap, topic)]
    assert values == [1, 2, 2, 3]


async def test_a_router_with_a_separate_relay_leaves_its_events_to_the_relay_process(
    broker: Any, common: dict[str, Any], ids: Any, database_url: str
) -> None:
    """``SWITCHBOARD_OUTBOX_RELAY=separate``: the router only writes its events; the relay
    process publishes them, woken by the router's notification (its own polls are 30 s
    apart here, so only the notification can wake it in time)."""
    settings = RouterSettings(**common, outbox_relay="separate")
    engine = make_engine(database_url, pool_size=1)
    agent = ids.agent_ids[0]
    topic = settings.topics.agent_events

    async def statuses() -> list[str]:
        events = [json.loads(r.value) for r in await read_topic(broker.bootstrap, topic)]
        return [e["status"] for e in events if "status" in e]

    async with running(create_app(settings)) as client:
        await put_agent(client, ids, agent)  # and online: an agent event in the outbox
        await asyncio.sleep(1.0)  # an in-process relay would have published it by now
        assert await _outbox(engine) >= 1
        assert await statuses() == []

        stop = asyncio.Event()
        relay = asyncio.create_task(run_relay(settings, stop, idle_poll_s=30))

        async def drained() -> bool:
            return await _outbox(engine) == 0

        await eventually(drained, what="the outbox published by the relay process")
        answer = await client.put(
            f"/v1/agents/{agent}/status", headers=ids.as_agent(agent), json={"status": "away"}
        )
        assert answer.status_code == 200, answer.text

        async def away_published() -> bool:
            return "away" in await statuses()

        await eventually(away_published, timeout=10, what="the relay woken by the router")
        stop.set()
        assert await relay >= 2
    assert await statuses() == ["online", "away"]
    await engine.dispose()
