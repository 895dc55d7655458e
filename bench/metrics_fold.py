"""The metrics service alone, folding a backlog of conversation events through Kafka, on an empty
database and on one that already holds 1,000,000 conversations of metrics history (facts,
waits, timeline with folds, processed events: bench/metrics_report.py FILL and TIMELINE_FILL);
next to the one-event-per-transaction fold (SWITCHBOARD_FOLD_BATCH_MAX_RECORDS=0) in the same run.

The backlog is what the router emits for a desk's conversations (opened, message received,
classified, queued, assigned, agent replied, a follow-up and its reply, resolved), interleaved
in time as the desk lives them, keyed by conversation. It is produced first; then a metrics
process starts, and its rate is the events recorded per second from its first to its last
(progress read from a sample of the events' ids through the primary key).
``python -m bench.metrics_fold`` prints the figures as JSON on its last line."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.metrics_report import FILL, TIMELINE_FILL
from bench.pipeline import memory_mb, service_env
from bench.stats import CpuShare, ratio
from devtools.run import launch, stop_all
from devtools.stack import (
    Broker,
    Postgres,
    drop_database,
    free_port,
    migrated_database,
)
from devtools.topics import produce
from shared.db import make_engine
from shared.events import (
    AgentReplied,
    Assigned,
    Channel,
    Classified,
    ConversationEvent,
    ConversationOpened,
    CustomerTier,
    MessageReceived,
    Priority,
    Queued,
    Resolved,
    Skill,
)
from shared.ids import derived_id
from shared.kafka import ensure_topics
from shared.settings import CommonSettings, Topics

CHANNELS = [Channel.CHAT] * 5 + [Channel.TELEGRAM] * 3 + [Channel.WHATSAPP] * 2 + [Channel.EMAIL]
SKILLS = [Skill.SECURITY, Skill.FUNDS, Skill.TRADING, Skill.API, Skill.ACCOUNT, Skill.GENERAL]


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def conversation(rng: random.Random, t0: datetime, n: int) -> list[ConversationEvent]:
    """One conversation's events as the router emits them (about 9)."""
    cid = derived_id("metrics-fold-bench", n, rng.random())
    channel = rng.choice(CHANNELS)
    agent = f"fold-agent-{rng.randrange(60):02d}"
    events: list[ConversationEvent] = []

    def add(model: Any, seconds: float, **fields: Any) -> None:
        events.append(
            model(
                event_id=derived_id("metrics-fold-bench", cid, len(events)),
                occurred_at=t0 + timedelta(seconds=seconds),
                conversation_id=cid,
                channel=channel,
                **fields,
            )
        )

    priority, skill = rng.choice(list(Priority)), rng.choice(SKILLS)
    tier = CustomerTier.VIP if rng.random() < 0.05 else CustomerTier.STANDARD
    add(
        ConversationOpened,
        0,
        conversation_key=f"{channel.value}:{cid}",
        customer_id="c",
        customer_tier=tier,
    )
    add(MessageReceived, 0, message_id=uuid.uuid4())
    add(Classified, 0.01, priority=priority, skill=skill, language="en", rules_fired=["bench"])
    queued = rng.random() < 0.3
    if queued:
        add(Queued, 0.02, priority=priority, skill=skill, language="en")
    assigned = 0.02 + (rng.uniform(5, 120) if queued else 0)
    add(Assigned, assigned, agent_id=agent, team=rng.choice(["L1", "L2", None]))
    reply = assigned + rng.uniform(5, 300)
    add(AgentReplied, reply, agent_id=agent, message_id=uuid.uuid4())
    if rng.random() < 0.6:
        add(MessageReceived, reply + rng.uniform(10, 300), message_id=uuid.uuid4())
        reply = events[-1].occurred_at.timestamp() - t0.timestamp() + rng.uniform(5, 300)
        add(AgentReplied, reply, agent_id=agent, message_id=uuid.uuid4())
    if rng.random() < 0.85:
        add(Resolved, reply + rng.uniform(30, 900), agent_id=agent)
    return events


# How many of the given events metrics has recorded, through processed_events' key.
_COUNT_FOLDED = """SELECT count(*) FROM metrics.processed_events p
                   JOIN unnest(CAST(:ats AS timestamptz[]), CAST(:ids AS uuid[])) AS k(at, id)
                     ON p.occurred_at = k.at AND p.event_id = k.id"""


def backlog(events: int, seed: int = 11) -> list[ConversationEvent]:
    """About ``events`` events of conversations opened one a second, in time order."""
    rng = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(days=1)
    out: list[ConversationEvent] = []
    n = 0
    while len(out) < events:
        out += conversation(rng, t0 + timedelta(seconds=n), n)
        n += 1
    out.sort(key=lambda e: e.occurred_at)
    return out


async def fold(
    broker: Broker,
    database_url: str,
    events: list[ConversationEvent],
    log_dir: Path,
    *,
    batch: int | None = None,
) -> dict[str, Any]:
    """Start a metrics process on ``database_url`` over a backlog of ``events``; its rate."""
    topics = Topics(namespace=f"fold{uuid.uuid4().hex[:8]}")
    await ensure_topics(CommonSettings(kafka_bootstrap=broker.bootstrap, topics=topics))
    records = [(str(e.conversation_id), e.model_dump_json().encode()) for e in events]
    await produce(broker.bootstrap, topics.conversation_events, records)
    keys = [(e.occurred_at, e.event_id) for e in events]
    # Progress from a sample through the primary key (a count of the table would scan it):
    # every 50th event, and the last ones produced, which are folded last on their partitions.
    sample = sorted(set(keys[::50] + keys[-200:]))
    engine = make_engine(database_url, pool_size=1)
    port = free_port()
    env = service_env("metrics", port, broker.bootstrap, database_url, [], topics.namespace)
    env["SWITCHBOARD_SLA_SWEEP_INTERVAL_S"] = "3600"
    if batch is not None:
        env["SWITCHBOARD_FOLD_BATCH_MAX_RECORDS"] = str(batch)
    process = launch("metrics", env, log_dir / f"metrics-fold-{port}.log")
    try:
        assert broker.process is not None
        cpu = CpuShare({"metrics": process.pid, "broker": broker.process.pid})
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + 900
        done = 0
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"metrics exited with code {process.returncode}")
            async with engine.connect() as conn:
                done = (
                    await conn.execute(
                        text(_COUNT_FOLDED),
                        {"ats": [at for at, _ in sample], "ids": [i for _, i in sample]},
                    )
                ).scalar_one()
            now = time.monotonic()
            if first is None and done:
                first = (now, done / len(sample) * len(events))
                cpu.start()
            if done >= len(sample):
                break
            await asyncio.sleep(0.05)
        assert first is not None, "metrics folded nothing"
        cpu_share = cpu.stop()
        elapsed = time.monotonic() - first[0]
        rate = (len(events) - first[1]) / elapsed if elapsed > 0 else None
        async with engine.connect() as conn:
            folded = (
                await conn.execute(
                    text(_COUNT_FOLDED),
                    {"ats": [at for at, _ in keys], "ids": [i for _, i in keys]},
                )
            ).scalar_one()
        return {
            "events": len(events),
            "folded": folded,
            "seconds": round(elapsed, 2),
            "events_s": round(rate, 1) if rate else None,
            "metrics_peak_rss_mb": memory_mb(process.pid),
            "cpu_share": cpu_share,
        }
    finally:
        stop_all({"metrics": process})
        await engine.dispose()


async def seed_history(database_url: str, conversations: int) -> float:
    """``conversations`` of metrics history, as the consumer leaves them; seconds taken."""
    engine = make_engine(database_url, pool_size=1)
    started = time.perf_counter()
    try:
        async with engine.begin() as conn:
            for statement in [*FILL, *TIMELINE_FILL]:
                await conn.execute(text(statement), {"n": conversations})
        # As a desk's tables stand (autovacuum has been by, and a checkpoint): the seed's
        # hint bits set and its pages written before the fold is measured, not during it.
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("conversations", "waits", "timeline", "processed_events"):
                await conn.execute(text(f"VACUUM ANALYZE metrics.{table}"))
            await conn.execute(text("CHECKPOINT"))
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def run(
    broker: Broker, pg: Postgres, log_dir: Path, *, events: int = 50_000, history: int = 1_000_000
) -> dict[str, Any]:
    """The ``metrics-fold`` part's figures."""
    made: list[str] = []
    try:
        work = backlog(events)
        say(f"metrics-fold: folding {len(work):,} events, empty tables")
        empty = await fold(broker, await migrated_database(pg.url, "fold", made), work, log_dir)
        single_work = work[: len(work) // 10]
        say(f"metrics-fold: folding {len(single_work):,} events one per transaction")
        single = await fold(
            broker, await migrated_database(pg.url, "fold", made), single_work, log_dir, batch=0
        )
        say(f"metrics-fold: {history:,} conversations of history (seeded in PostgreSQL)")
        url = await migrated_database(pg.url, "fold", made)
        seeded_s = await seed_history(url, history)
        say(f"metrics-fold: folding {len(work):,} events over that history")
        full = await fold(broker, url, backlog(events, seed=12), log_dir)
    finally:
        for name in made:
            await drop_database(pg.url, name)
    return {
        "events_s": empty["events_s"],
        "events_s_1m": full["events_s"],
        "history_ratio": ratio(full["events_s"], empty["events_s"]),
        "events_s_one_per_transaction": single["events_s"],
        "batch_over_one_per_transaction": ratio(empty["events_s"], single["events_s"]),
        "cpu_share": empty["cpu_share"],
        "cpu_share_1m": full["cpu_share"],
        "history_conversations": history,
        "history_seed_s": round(seeded_s, 1),
        "empty": empty,
        "history": full,
        "one_per_transaction": single,
    }


async def _main(events: int, history: int) -> None:
    import tempfile

    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    pg = Postgres()
    try:
        out = await run(broker, pg, log_dir, events=events, history=history)
    finally:
        broker.stop()
        pg.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the metrics fold draining a backlog")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--history", type=int, default=1_000_000)
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.events, arguments.history))
