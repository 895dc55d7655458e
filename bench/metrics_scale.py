"""Metrics at millions of conversations (issue 17): the paths that run all the time, at
1,000,000 and at 5,000,000 conversations of history (100,000 and 500,000 in --quick).

History is generated in PostgreSQL (set-based, through the triggers that keep the scrape's
counters, as the consumer's writes go through them): a desk opening a conversation every
2.592 s (a million a month), the latest first, so that the larger size adds older history
and the last days look the same at both sizes. The newest 2,000 await their first reply.

At each size, a fresh metrics process (default settings: a 7-day window of report columns):

- ``first_report_s``: from its launch to its first report answered (the last day's summary,
  asked from the start); ``ready_s``: to its ``/readyz`` (its consumer in its group);
- ``scrape_ms``: ``GET /metrics``, best of 5;
- ``summary_ms``: the summary of the last day (within the window), best of 5;
  ``summary_window_ms``: of the whole window by channel and priority;
  ``summary_all_ms``: of all history, which reads what is before the window from PostgreSQL;
- ``rss_mib``: the process's resident memory after those reports (``peak_rss_mib`` too);
- ``sla_sweep_ms``: one SLA sweep (clock, crossings, marks) with nothing new to cross, best of
  5, after a first sweep marked the crossings of the 2,000 live ones
  (``first_sweep_ms``).

``python -m bench.metrics_scale`` prints the figures as JSON on its last line."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.pipeline import memory_mb, service_env
from devtools.run import launch, stop_all
from devtools.stack import Broker, Postgres, drop_database, free_port, migrated_database
from services.metrics.sla import crossings
from services.metrics.sla_store import SlaStore
from shared.auth import hash_key, new_key
from shared.db import make_engine, make_sessionmaker
from shared.settings import Topics

SPACING_S = 2.592  # a million conversations a month
LIVE = 2_000
CHUNK = 500_000
PARTITIONS = 6

# Conversation g (from 1, newest first) opened g * SPACING_S before the history's "now".
_CONVERSATIONS = """
INSERT INTO metrics.conversations
    (conversation_id, channel, customer_tier, priority, skill, language, agent_id, team,
     opened_at, first_message_at, first_assigned_at, first_response_at, resolved_at,
     assignments, customer_messages, agent_replies, resolution_s, resolution_bs,
     queue_wait_s, queue_wait_bs, sla_breached_at)
SELECT CAST(lpad(to_hex(g), 32, '0') AS uuid),
       (ARRAY['chat','email','telegram','whatsapp','x','form','messenger'])[1 + g % 7],
       CASE WHEN g % 20 = 0 THEN 'vip' ELSE 'standard' END,
       (ARRAY['urgent','high','normal','low'])[1 + g % 4],
       (ARRAY['security','funds','trading','api','account','general'])[1 + g % 6],
       (ARRAY['en','zh','ja','ko'])[1 + g % 4],
       'agent-' || (g % 500), (ARRAY['L1','L2','vip'])[1 + g % 3],
       t, t, t + make_interval(secs => q),
       CASE WHEN g > :live THEN t + make_interval(secs => q + f) END,
       CASE WHEN g > :live AND g % 10 <> 0 THEN t + make_interval(secs => r) END,
       1 + (g % 3 = 0)::int, 1 + g % 5, CASE WHEN g > :live THEN 1 + g % 3 ELSE 0 END,
       CASE WHEN g > :live AND g % 10 <> 0 THEN r END,
       CASE WHEN g > :live AND g % 10 <> 0 THEN r * 0.4 END, q, q * 0.4,
       CASE WHEN g > :live AND f > 3600 THEN t + interval '1 hour' END
FROM (SELECT g,
             CAST(:now AS timestamptz) - make_interval(secs => g * CAST(:spacing AS float8)) AS t,
             (g * 7919 % 120)::float8 AS q, (5 + g * 104729 % 3600)::float8 AS f,
             (300 + g * 15485863 % 172800)::float8 AS r
      FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1) g) s
"""
# Every answered conversation's first response, and a next reply for one in three.
_WAITS = """
INSERT INTO metrics.waits
    (conversation_id, seq, kind, episode, started_at, replied_at, seconds, business_seconds,
     opened_at, channel, priority, skill, language, agent_id, customer_tier, team)
SELECT conversation_id, w.seq, w.kind, 0, first_message_at, first_response_at,
       w.factor * date_part('epoch', first_response_at - first_message_at),
       w.factor * 0.4 * date_part('epoch', first_response_at - first_message_at),
       opened_at, channel, priority, skill, language, agent_id, customer_tier, team
FROM metrics.conversations
CROSS JOIN (VALUES (0, 'first', 1.0), (1, 'next', 0.5)) AS w(seq, kind, factor)
WHERE conversation_id >= CAST(lpad(to_hex(CAST(:lo AS bigint)), 32, '0') AS uuid)
  AND conversation_id < CAST(lpad(to_hex(CAST(:hi AS bigint)), 32, '0') AS uuid)
  AND first_response_at IS NOT NULL AND (w.kind = 'first' OR assignments > 1)
"""
POLICIES = """
INSERT INTO metrics.sla_policies VALUES
    ('urgent', '*', 300, 14400), ('high', '*', 900, 43200), ('normal', '*', 3600, 86400),
    ('low', '*', 14400, 172800), ('urgent', 'chat', 60, 3600), ('high', 'chat', 300, 14400)
ON CONFLICT DO NOTHING
"""


HEADLINE = ("scrape_ms", "sla_sweep_ms", "first_report_s", "summary_ms", "rss_mib")


def label(size: int) -> str:
    """1m for a million, 500k for half a million."""
    return f"{size // 1_000_000}m" if size % 1_000_000 == 0 else f"{size // 1000}k"


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


async def seed(database_url: str, now: datetime, lo: int, hi: int) -> float:
    """Conversations lo..hi-1 (numbered from 1, newest first) and their waits; seconds."""
    engine = make_engine(database_url, pool_size=1)
    started = time.perf_counter()
    try:
        async with engine.begin() as conn:
            await conn.execute(text(POLICIES))
        for start in range(lo, hi, CHUNK):
            end = min(start + CHUNK, hi)
            params = {"now": now, "lo": start, "hi": end, "live": LIVE, "spacing": SPACING_S}
            async with engine.begin() as conn:
                await conn.execute(text(_CONVERSATIONS), params)
                await conn.execute(text(_WAITS), params)
            say(f"metrics-scale: {end - 1:,} conversations seeded")
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("conversations", "waits"):
                await conn.execute(text(f"VACUUM ANALYZE metrics.{table}"))
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def _best(call: Callable[[], Awaitable[object]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        await call()
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


async def sweeps(database_url: str, repeats: int) -> dict[str, float]:
    """A first sweep (committed: the live ones' crossings), then sweeps with nothing new,
    rolled back; as a caught-up process sweeps, every partition folded up to now."""
    topic = Topics(namespace=f"scale{uuid.uuid4().hex[:8]}").conversation_events
    engine = make_engine(database_url, pool_size=1)
    sessions = make_sessionmaker(engine)

    async def sweep(commit: bool) -> None:
        async with sessions() as session:
            async with session.begin() as tx:
                sla = SlaStore(session)
                now = datetime.now(UTC)
                await sla.advance_fold_clock(topic, dict.fromkeys(range(PARTITIONS), now))
                await crossings(sla, topic, now)
                if not commit:
                    await tx.rollback()

    try:
        first = await _best(lambda: sweep(True), 1)
        steady = await _best(lambda: sweep(False), repeats)
    finally:
        await engine.dispose()
    return {"first_sweep_ms": first, "sla_sweep_ms": steady}


async def fresh_process(
    broker: Broker, database_url: str, log_dir: Path, repeats: int
) -> dict[str, Any]:
    """A new metrics process over the history: its start, scrape, reports and memory."""
    key = new_key()
    port = free_port()
    ops = [{"name": "ops", "sha256": hash_key(key), "scopes": ["ops"]}]
    namespace = f"benchscale{uuid.uuid4().hex[:8]}"
    env = service_env("metrics", port, broker.bootstrap, database_url, ops, namespace)
    env["SWITCHBOARD_SLA_SWEEP_INTERVAL_S"] = "3600"  # timed on its own
    base = f"http://127.0.0.1:{port}"
    launched = time.perf_counter()
    process = launch("metrics", env, log_dir / f"metrics-scale-{port}.log")
    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=600
        ) as client:
            day = {"from": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
            # Asked from the start: a report is answered once the app serves, before its
            # consumer has joined its group (``/readyz``).
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"metrics exited with code {process.returncode}")
                try:
                    if (await client.get("/v1/metrics/summary", params=day)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            first_report_s = time.perf_counter() - launched
            ready = None
            while ready is None:
                if (await client.get("/readyz")).status_code == 200:
                    ready = time.perf_counter() - launched
                else:
                    await asyncio.sleep(0.05)
            ready_s = ready

            def get(path: str, **params: Any) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    (await client.get(path, params=params)).raise_for_status()

                return call

            window = (await client.get("/v1/metrics/summary", params=day)).json()["reach"]
            figures = {
                "scrape_ms": await _best(get("/metrics"), repeats),
                "summary_ms": await _best(get("/v1/metrics/summary", **day), repeats),
                "summary_window_ms": await _best(
                    get(
                        "/v1/metrics/summary",
                        group_by="channel,priority",
                        **{"from": window["window_start"]},
                    ),
                    repeats,
                ),
            }
            rss = memory_mb(process.pid, "VmRSS")
            figures["summary_all_ms"] = await _best(get("/v1/metrics/summary"), 1)
            return {
                "ready_s": round(ready_s, 2),
                "first_report_s": round(first_report_s, 2),
                **figures,
                "rss_mib": rss,
                "peak_rss_mib": memory_mb(process.pid),
                "rss_after_all_history_mib": memory_mb(process.pid, "VmRSS"),
                "window_start": window["window_start"],
            }
    finally:
        await asyncio.to_thread(stop_all, {"metrics": process})


async def run(
    broker: Broker,
    pg: Postgres,
    log_dir: Path,
    *,
    sizes: tuple[int, ...] = (1_000_000, 5_000_000),
    repeats: int = 5,
) -> dict[str, Any]:
    """The ``metrics-scale`` part's figures."""
    made: list[str] = []
    by_size: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        url = await migrated_database(pg.url, "scale", made)
        now = datetime.now(UTC)
        seeded = 1
        for size in sizes:
            say(f"metrics-scale: seeding up to {size:,} conversations")
            seed_s = await seed(url, now, seeded, size + 1)
            seeded = size + 1
            say(f"metrics-scale: a fresh metrics process over {size:,} conversations")
            figures = await fresh_process(broker, url, log_dir, repeats)
            figures |= await sweeps(url, repeats)
            by_size[label(size)] = {"seed_s": round(seed_s, 1), **figures}
            say(f"metrics-scale: {size:,}: {json.dumps(by_size[label(size)])}")
    finally:
        for name in made:
            await drop_database(pg.url, name)
    small, large = (by_size[label(s)] for s in (sizes[0], sizes[-1]))
    out: dict[str, Any] = {
        f"{name}_{label(size)}": by_size[label(size)][name] for size in sizes for name in HEADLINE
    }
    out["rss_growth"] = (
        round(large["rss_mib"] / small["rss_mib"], 2)
        if small["rss_mib"] and large["rss_mib"]
        else None
    )
    return out | {
        "sizes": list(sizes),
        "by_size": by_size,
        "seconds": round(time.perf_counter() - started),
    }


async def _main(sizes: tuple[int, ...]) -> None:
    import tempfile

    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    pg = Postgres()
    try:
        out = await run(broker, pg, log_dir, sizes=sizes)
    finally:
        broker.stop()
        pg.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="metrics at millions of conversations")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    asyncio.run(_main(tuple(parser.parse_args().sizes)))
