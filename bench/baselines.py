"""Baselines measured on the same broker and database as the pipeline: a bare aiokafka
produce→consume loop, a trivial FastAPI endpoint, one PostgreSQL transaction per message."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from bench.stats import pct
from devtools.stack import Broker
from shared.db import make_engine
from shared.kafka import ensure_topics, make_producer
from shared.settings import CommonSettings, Topics


async def kafka_loop(broker: Broker, messages: int, payload_bytes: int = 600) -> dict[str, Any]:
    """Produce ``messages`` records (acks=all) while a group consumer reads them."""
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        topics=Topics(namespace=f"bl{uuid.uuid4().hex[:8]}"),
        kafka_session_timeout_ms=3000,
    )
    topic = settings.topics.inbound
    await ensure_topics(settings, [topic])
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id="baseline",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        session_timeout_ms=3000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    producer = make_producer(settings)
    await producer.start()
    latencies: list[float] = []
    padding = "x" * payload_bytes

    async def consume() -> None:
        while len(latencies) < messages:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for tp, records in batch.items():
                for r in records:
                    latencies.append(now - json.loads(r.value)["t"])
                await consumer.commit({tp: records[-1].offset + 1})

    reader = asyncio.create_task(consume())
    started = time.time()
    for i in range(messages):
        body = json.dumps({"t": time.time(), "p": padding}).encode()
        await producer.send(topic, body, key=f"k{i % 500}".encode())
    await producer.flush()
    await asyncio.wait_for(reader, 120)
    elapsed = time.time() - started
    await producer.stop()
    await consumer.stop()
    return {
        "messages": messages,
        "rate": round(messages / elapsed, 1),
        "latency_p50_ms": pct(latencies, 50),
        "latency_p99_ms": pct(latencies, 99),
    }


ROUTER_SHAPE = """
CREATE SCHEMA IF NOT EXISTS baseline;
CREATE TABLE IF NOT EXISTS baseline.conversations (id uuid PRIMARY KEY, key text, state text,
    priority text, agent_id text, opened_at timestamptz);
CREATE TABLE IF NOT EXISTS baseline.messages (id uuid PRIMARY KEY, conversation_id uuid,
    text text, created_at timestamptz);
CREATE TABLE IF NOT EXISTS baseline.agents (id text PRIMARY KEY, load int NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS baseline.outbox (id bigserial PRIMARY KEY, topic text, key text,
    payload text)
"""


async def pg_loop(database_url: str, messages: int) -> dict[str, Any]:
    """One transaction per message, of the router's shape: a dedup read, a conversation and a
    message insert, a conditional load update, four outbox rows."""
    engine = make_engine(database_url, pool_size=2)
    async with engine.begin() as conn:
        for statement in ROUTER_SHAPE.split(";\n"):
            await conn.execute(text(statement))
        await conn.execute(
            text(
                "INSERT INTO baseline.agents (id) SELECT 'a' || g FROM generate_series(1, 50) g "
                "ON CONFLICT DO NOTHING"
            )
        )
    latencies = []
    started = time.perf_counter()
    for i in range(messages):
        t0 = time.perf_counter()
        async with engine.begin() as conn:
            mid, cid = uuid.uuid4(), uuid.uuid4()
            await conn.execute(text("SELECT 1 FROM baseline.messages WHERE id = :id"), {"id": mid})
            await conn.execute(
                text(
                    "INSERT INTO baseline.conversations VALUES (:id, :key, 'queued', 'normal', "
                    "NULL, now())"
                ),
                {"id": cid, "key": f"chat:{i}"},
            )
            await conn.execute(
                text("INSERT INTO baseline.messages VALUES (:id, :cid, 'hello', now())"),
                {"id": mid, "cid": cid},
            )
            await conn.execute(
                text("UPDATE baseline.agents SET load = load + 1 WHERE id = :a AND load < 1000000"),
                {"a": f"a{i % 50 + 1}"},
            )
            for kind in ("opened", "received", "classified", "assigned"):
                await conn.execute(
                    text("INSERT INTO baseline.outbox (topic, key, payload) VALUES (:t, :k, :p)"),
                    {"t": "events", "k": str(cid), "p": kind * 40},
                )
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return {
        "messages": messages,
        "rate": round(messages / elapsed, 1),
        "latency_p50_ms": pct(latencies, 50),
        "latency_p99_ms": pct(latencies, 99),
    }
