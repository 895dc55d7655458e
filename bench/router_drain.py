"""The router alone, draining a backlog of inbound messages through Kafka, on an empty database
and on one that already holds 1,000,000 conversations; next to one PostgreSQL transaction per
message of the router's shape (bench/baselines.py) in the same run.

The backlog (new conversations and follow-ups, several channels and languages) is produced on
the inbound topic first; then a router process starts with 60 agents online (its outbox relay a
process of its own, as deployed; once more with the relay in the router process) and its rate
is the messages stored per second from its first to its last. ``python -m bench.run --only
router`` runs this part and prints its figures as JSON on the last line."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench import baselines
from bench.history import seed_router_history
from bench.pipeline import ALL_SKILLS, CAPACITY, TEXTS, memory_mb, service_env
from bench.stats import CpuShare, ratio
from devtools.run import launch, stop_all, wait_ready
from devtools.stack import (
    Broker,
    Postgres,
    drop_database,
    free_port,
    migrated_database,
)
from devtools.topics import produce
from shared.auth import hash_key, new_key
from shared.db import make_engine
from shared.events import Channel, Customer, InboundMessage
from shared.ids import conversation_key_for, message_id_for
from shared.kafka import ensure_topics
from shared.settings import CommonSettings, Topics

AGENTS = 60
LANGUAGES = ["en", "zh", "ja", "ko"]
CHANNELS = ["chat"] * 5 + ["telegram"] * 3 + ["whatsapp"] * 2 + ["email", "form"]


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def backlog(n: int, seed: int = 7) -> list[InboundMessage]:
    """``n`` messages: seven in ten open a conversation, the rest follow one of the recent
    ones (its thread keeps its order on its partition)."""
    rng = random.Random(seed)
    threads: list[tuple[str, str]] = []
    out = []
    now = datetime.now(UTC)
    for i in range(n):
        if threads and rng.random() < 0.3:
            channel, ref = rng.choice(threads[-500:])
        else:
            channel, ref = rng.choice(CHANNELS), f"drain-{i}"
            threads.append((channel, ref))
        language = rng.choice(LANGUAGES)
        mid = message_id_for(Channel(channel), f"drain-{uuid.uuid4().hex}")
        out.append(
            InboundMessage(
                event_id=mid,
                occurred_at=now,
                message_id=mid,
                channel=Channel(channel),
                channel_message_id=str(mid),
                conversation_key=conversation_key_for(Channel(channel), ref),
                customer=Customer(id=f"cust-{ref}", language=language),
                text=rng.choice(TEXTS[language]),
            )
        )
    return out


async def _seed_agents(router_url: str, ops: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=router_url, headers=ops, timeout=10) as client:
        for i in range(AGENTS):
            agent = f"drain-agent-{i:02d}"
            answer = await client.put(
                f"/v1/agents/{agent}",
                json={
                    "name": agent,
                    "skills": ALL_SKILLS,
                    "languages": [LANGUAGES[i % 4], "en"],
                    "capacity": CAPACITY,
                },
            )
            answer.raise_for_status()
            answer = await client.put(f"/v1/agents/{agent}/status", json={"status": "online"})
            answer.raise_for_status()


async def drain(
    broker: Broker,
    database_url: str,
    messages: list[InboundMessage],
    log_dir: Path,
    *,
    batch: int | None = None,
    relay: str = "separate",
) -> dict[str, Any]:
    """Start a router on ``database_url`` over a backlog of ``messages``; its drain rate
    (``relay``: its outbox relay ``separate``, a process of its own as deployed, or
    ``in-process``)."""
    topics = Topics(namespace=f"drain{uuid.uuid4().hex[:8]}")
    await ensure_topics(CommonSettings(kafka_bootstrap=broker.bootstrap, topics=topics))
    engine = make_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        start_seq = (
            await conn.execute(text("SELECT coalesce(max(seq), 0) FROM router.messages"))
        ).scalar_one()
    ops_key = new_key()
    keys = [{"name": "ops", "sha256": hash_key(ops_key), "scopes": ["ops"]}]
    port = free_port()
    env = service_env("router", port, broker.bootstrap, database_url, keys, topics.namespace)
    env["SWITCHBOARD_RATE_LIMIT_PER_KEY_PER_S"] = "100000"
    if batch is not None:
        env["SWITCHBOARD_INBOUND_BATCH_MAX_RECORDS"] = str(batch)
    env["SWITCHBOARD_OUTBOX_RELAY"] = relay
    # The drain's agents are set online and never poll: no frontend to time out.
    env["SWITCHBOARD_PRESENCE_TIMEOUT_S"] = "0"
    process = launch("router", env, log_dir / f"router-drain-{port}.log")
    processes = {"router": process}
    if relay == "separate":
        processes["relay"] = launch("router.relay", env, log_dir / f"relay-drain-{port}.log")
    try:
        await asyncio.to_thread(wait_ready, "router", port, process, 60)
        await _seed_agents(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {ops_key}"})
        records = [(m.conversation_key, m.model_dump_json().encode()) for m in messages]
        await produce(broker.bootstrap, topics.inbound, records)
        n = len(messages)
        assert broker.process is not None
        cpu = CpuShare(
            {name: p.pid for name, p in processes.items()} | {"broker": broker.process.pid}
        )
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + 600
        stored = 0
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                stored = (
                    await conn.execute(
                        text("SELECT count(*) FROM router.messages WHERE seq > :s"),
                        {"s": start_seq},
                    )
                ).scalar_one()
            now = time.monotonic()
            if first is None and stored:
                first = (now, stored)
                cpu.start()
            if stored >= n:
                break
            await asyncio.sleep(0.05)
        assert first is not None, "the router stored nothing"
        cpu_share = cpu.stop()
        elapsed = time.monotonic() - first[0]
        rate = (stored - first[1]) / elapsed if elapsed > 0 else None
        async with engine.connect() as conn:
            over = (
                await conn.execute(
                    text("SELECT count(*) FROM router.agent_slots WHERE load > capacity")
                )
            ).scalar_one()
            assigned = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM router.conversations "
                        "WHERE state = 'assigned' AND agent_id LIKE 'drain-agent-%'"
                    )
                )
            ).scalar_one()
        return {
            "messages": n,
            "stored": stored,
            "seconds": round(elapsed, 2),
            "msg_s": round(rate, 1) if rate else None,
            "assigned": assigned,
            "slots_over_capacity": over,
            "router_peak_rss_mb": memory_mb(process.pid),
            "cpu_share": cpu_share,
        }
    finally:
        stop_all(processes)
        await engine.dispose()


async def run(
    broker: Broker,
    pg: Postgres,
    log_dir: Path,
    *,
    messages: int = 20_000,
    history: int = 1_000_000,
) -> dict[str, Any]:
    """The ``router`` part's figures."""
    made: list[str] = []
    try:
        return await _run(broker, pg, log_dir, made, messages=messages, history=history)
    finally:
        for name in made:
            await drop_database(pg.url, name)


async def _run(
    broker: Broker,
    pg: Postgres,
    log_dir: Path,
    made: list[str],
    *,
    messages: int,
    history: int,
) -> dict[str, Any]:
    work = backlog(messages)
    say(f"router: baseline, one PostgreSQL transaction per message ({messages // 10:,})")
    base = await baselines.pg_loop(await migrated_database(pg.url, "drain", made), messages // 10)
    say(f"router: draining {messages:,} messages, empty tables")
    empty = await drain(broker, await migrated_database(pg.url, "drain", made), work, log_dir)
    say(f"router: draining {messages:,} messages, empty tables, the relay in the router")
    in_process = await drain(
        broker, await migrated_database(pg.url, "drain", made), work, log_dir, relay="in-process"
    )
    say(f"router: draining {messages // 10:,} messages one per transaction (batch of 1)")
    single = await drain(
        broker,
        await migrated_database(pg.url, "drain", made),
        work[: messages // 10],
        log_dir,
        batch=1,
    )
    say(f"router: {history:,} conversations of history (seeded in PostgreSQL)")
    url = await migrated_database(pg.url, "drain", made)
    seeded_s = await seed_router_history(url, history)
    say(f"router: draining {messages:,} messages over that history")
    full = await drain(broker, url, backlog(messages, seed=8), log_dir)
    out = {
        "msg_s": empty["msg_s"],
        "baseline_msg_s": base["rate"],
        "ratio": ratio(empty["msg_s"], base["rate"]),
        "msg_s_1m": full["msg_s"],
        "history_ratio": ratio(full["msg_s"], empty["msg_s"]),
        "msg_s_batch_of_1": single["msg_s"],
        "msg_s_relay_in_process": in_process["msg_s"],
        "history_conversations": history,
        "history_seed_s": round(seeded_s, 1),
        "empty": empty,
        "relay_in_process": in_process,
        "history": full,
        "batch_of_1": single,
        "baseline": base,
    }
    return out
