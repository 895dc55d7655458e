"""Metrics report queries over a large history: 1,000,000 conversations (100,000 in --quick),
generated in the database with SLA policies and CSAT scores, then the summary, a grouped
summary, a filtered one, a time series and a summary in business time, each timed through
the report cache the API uses:

- cold: the first report of a process, which reads every day's columns from PostgreSQL;
- warm: nothing changed since the previous report;
- after writes: 1,000 of today's conversations changed since the previous report, so that
  day is read again first.

Baseline, in the same run: the overall summary as one PostgreSQL query per table with
``percentile_disc`` (how the service computed reports before the cache)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.pipeline import memory_mb, service_env
from devtools.run import launch, stop_all, wait_ready
from devtools.stack import free_port
from services.metrics.report import Filters
from services.metrics.report_cache import ReportCache
from shared.auth import hash_key, new_key
from shared.db import make_engine, make_sessionmaker

# Conversations as the consumer writes them: facts and measures per conversation, and one
# row per answered wait (every conversation's first response, a next reply for one in three).
FILL = [
    """
INSERT INTO metrics.conversations
    (conversation_id, channel, customer_tier, priority, skill, language, agent_id, team,
     opened_at, first_message_at, first_assigned_at, first_response_at, resolved_at,
     assignments, customer_messages, agent_replies)
SELECT gen_random_uuid(),
       (ARRAY['chat','email','telegram','whatsapp','x','form','messenger'])[1 + g % 7],
       CASE WHEN g % 20 = 0 THEN 'vip' ELSE 'standard' END,
       (ARRAY['urgent','high','normal','low'])[1 + g % 4],
       (ARRAY['security','funds','trading','api','account','general'])[1 + g % 6],
       (ARRAY['en','zh','ja','ko'])[1 + g % 4],
       'agent-' || (g % 500), (ARRAY['L1','L2','vip'])[1 + g % 3],
       t, t, t + make_interval(secs => random() * 120),
       t + make_interval(secs => 5 + random() * 3600),
       CASE WHEN g % 10 = 0 THEN NULL ELSE t + make_interval(secs => 60 + random() * 172800) END,
       1 + (g % 3 = 0)::int, 1 + g % 5, 1 + g % 3
FROM (SELECT g, TIMESTAMPTZ '2026-10-01 00:00:00+00' + make_interval(secs => g * 2.592)
      AS t FROM generate_series(1, :n) g) s
""",
    """
UPDATE metrics.conversations SET
    resolution_s = date_part('epoch', resolved_at - opened_at),
    resolution_bs = date_part('epoch', resolved_at - opened_at) * 0.4,
    queue_wait_s = date_part('epoch', first_assigned_at - opened_at),
    queue_wait_bs = date_part('epoch', first_assigned_at - opened_at) * 0.4
""",
    """
INSERT INTO metrics.waits
    (conversation_id, seq, kind, episode, started_at, replied_at, seconds, business_seconds,
     opened_at, channel, priority, skill, language, agent_id, customer_tier, team)
SELECT conversation_id, w.seq, w.kind, 0, first_message_at, first_response_at,
       w.factor * date_part('epoch', first_response_at - first_message_at),
       w.factor * 0.4 * date_part('epoch', first_response_at - first_message_at),
       opened_at, channel, priority, skill, language, agent_id, customer_tier, team
FROM metrics.conversations
CROSS JOIN (VALUES (0, 'first', 1.0), (1, 'next', 0.5)) AS w(seq, kind, factor)
WHERE w.kind = 'first' OR assignments > 1
""",
]


# The timeline the consumer keeps of those conversations (since 0010): each entry with the fold
# after it (services/metrics/facts.py ``Fold``, only its fields that are not defaults), and
# every event recorded as processed. The reports do not read it; a fold does.
_FOLD = "jsonb_build_object('opened_at', opened_at, 'first_message_at', first_message_at"
TIMELINE_FILL = [
    f"""
INSERT INTO metrics.timeline (event_id, conversation_id, moment, at, agent_id, team, state)
SELECT gen_random_uuid(), conversation_id, e.moment, e.at, e.agent_id, e.team, e.state
FROM metrics.conversations CROSS JOIN LATERAL (VALUES
    ('opened', opened_at, NULL, NULL, jsonb_build_object('opened_at', opened_at)),
    ('message', first_message_at, NULL, NULL,
     {_FOLD}, 'customer_messages', 1, 'waiting_since', first_message_at)),
    ('assigned', first_assigned_at, agent_id, team,
     {_FOLD}, 'customer_messages', 1, 'waiting_since', first_message_at,
       'first_assigned_at', first_assigned_at, 'assignments', 1, 'agent_id', agent_id,
       'team', team)),
    ('replied', first_response_at, agent_id, NULL,
     {_FOLD}, 'customer_messages', 1, 'first_assigned_at', first_assigned_at,
       'assignments', 1, 'agent_id', agent_id, 'team', team,
       'first_response_at', first_response_at, 'agent_replies', 1, 'answered', true,
       'waits', 1)),
    ('resolved', resolved_at, agent_id, NULL,
     {_FOLD}, 'customer_messages', 1, 'first_assigned_at', first_assigned_at,
       'assignments', 1, 'agent_id', agent_id, 'team', team,
       'first_response_at', first_response_at, 'agent_replies', 1, 'answered', true,
       'waits', 1, 'resolved_at', resolved_at))
) AS e(moment, at, agent_id, team, state)
WHERE e.at IS NOT NULL
""",
    """INSERT INTO metrics.processed_events (occurred_at, event_id)
       SELECT at, event_id FROM metrics.timeline""",
]


# SLA targets for every priority on every channel, and a few channel-specific ones.
POLICIES = """
INSERT INTO metrics.sla_policies VALUES
    ('urgent', '*', 300, 14400), ('high', '*', 900, 43200), ('normal', '*', 3600, 86400),
    ('low', '*', 14400, 172800), ('urgent', 'chat', 60, 3600), ('high', 'chat', 300, 14400)
"""
# One resolved conversation in four rated.
CSAT = """
INSERT INTO metrics.csat
SELECT conversation_id, 1 + abs(hashtext(conversation_id::text || 'score')) % 5, NULL,
       resolved_at
FROM metrics.conversations
WHERE resolved_at IS NOT NULL AND abs(hashtext(conversation_id::text)) % 4 = 0
"""
# Conversations of the last day change: what the consumer does between two reports.
TOUCH = """
UPDATE metrics.conversations SET agent_replies = agent_replies + 1
WHERE conversation_id IN (SELECT conversation_id FROM metrics.conversations
                          ORDER BY opened_at DESC LIMIT 1000)
"""
BASELINE = [
    """SELECT count(*), avg(resolution_s), min(resolution_s), max(resolution_s),
              percentile_disc(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY resolution_s),
              avg(queue_wait_s), min(queue_wait_s), max(queue_wait_s),
              percentile_disc(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY queue_wait_s)
       FROM metrics.conversations WHERE opened_at IS NOT NULL""",
    """SELECT kind, count(*), avg(seconds), min(seconds), max(seconds),
              percentile_disc(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY seconds)
       FROM metrics.waits WHERE opened_at IS NOT NULL GROUP BY kind""",
]


async def _best(query: Callable[[], Awaitable[object]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        await query()
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


async def over_http(
    database_url: str, bootstrap: str, log_dir: Path, *, repeats: int = 3
) -> dict[str, float | None]:
    """Best times of the same reports asked of a metrics service process over HTTP (JSON
    encoding included), after it read the columns at start; and its memory then."""
    key = new_key()
    port = free_port()
    ops = [{"name": "ops", "sha256": hash_key(key), "scopes": ["ops"]}]
    namespace = f"benchreports{uuid.uuid4().hex[:8]}"
    env = service_env("metrics", port, bootstrap, database_url, ops, namespace)
    process = launch("metrics", env, log_dir / "metrics-reports.log")
    try:
        await asyncio.to_thread(wait_ready, "metrics", port, process, 60)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        ) as client:

            def get(path: str, **params: str | list[str]) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    response = await client.get(path, params=params)
                    response.raise_for_status()

                return call

            await get("/v1/metrics/summary")()  # waits for the read at start
            asked = {
                "summary, all": get("/v1/metrics/summary"),
                "summary by channel × priority": get(
                    "/v1/metrics/summary", group_by=["channel", "priority"]
                ),
                "timeseries 1h, all": get("/v1/metrics/timeseries", interval="1h"),
            }
            best = {name: await _best(call, repeats) for name, call in asked.items()}
            return best | {
                "process_rss_mib": memory_mb(process.pid, "VmRSS"),
                "process_peak_rss_mib": memory_mb(process.pid),
            }
    finally:
        await asyncio.to_thread(stop_all, {"metrics": process})


async def run(
    database_url: str,
    conversations: int,
    *,
    bootstrap: str | None = None,
    log_dir: Path | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    engine = make_engine(database_url, pool_size=2)
    started = time.perf_counter()
    async with engine.begin() as conn:
        for statement in [*FILL, POLICIES, CSAT]:
            await conn.execute(text(statement), {"n": conversations})
    async with engine.connect() as conn:
        for table in ("conversations", "waits", "csat"):
            await conn.execute(text(f"ANALYZE metrics.{table}"))
    fill_s = time.perf_counter() - started
    sessions = make_sessionmaker(engine)
    cache = ReportCache(sessions)
    week_start, week_end = datetime(2026, 10, 8, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC)
    queries: dict[str, Callable[[], Awaitable[object]]] = {
        "summary, all": lambda: cache.summary(Filters(), group_by=(), clock="calendar"),
        "summary by channel × priority (total and groups)": lambda: cache.summary(
            Filters(), group_by=("channel", "priority"), clock="calendar"
        ),
        "summary, one channel, one week": lambda: cache.summary(
            Filters(channel="chat", start=week_start, end=week_end), group_by=(), clock="calendar"
        ),
        "timeseries 1h, all": lambda: cache.report(Filters(), interval="1h"),
        "summary, all, business time": lambda: cache.summary(
            Filters(), group_by=(), clock="business"
        ),
    }
    cold = await _best(queries["summary, all"], 1)
    warm = {name: await _best(query, repeats) for name, query in queries.items()}
    after_writes = []
    for _ in range(repeats):
        async with engine.begin() as conn:
            await conn.execute(text(TOUCH))
        after_writes.append(await _best(queries["summary, all"], 1))

    async def baseline() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SET work_mem = '256MB'"))
            for statement in BASELINE:
                await conn.execute(text(statement))

    baseline_ms = await _best(baseline, repeats)
    await engine.dispose()
    http = (
        await over_http(database_url, bootstrap, log_dir, repeats=repeats)
        if bootstrap and log_dir
        else {}
    )
    return {
        "conversations": conversations,
        "fill_s": round(fill_s, 1),
        "cold_first_report_ms": cold,
        "best_ms": warm,
        "summary_after_1000_writes_ms": min(after_writes),
        "baseline_sql_summary_ms": baseline_ms,
        "baseline_over_cached_summary": round(baseline_ms / warm["summary, all"], 1),
        "over_http_best_ms": http,
    }


async def _main(rows: int) -> None:
    import tempfile

    from devtools.stack import (
        Broker,
        Postgres,
        create_database,
        drop_database,
        migrate,
        unique_name,
    )

    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    pg = Postgres()
    name = unique_name("bench_reports")
    await create_database(pg.url, name)
    try:
        await asyncio.to_thread(migrate, pg.url_for(name))
        print(f"[bench] metrics reports over {rows:,} conversations", flush=True)
        figures = await run(pg.url_for(name), rows, bootstrap=broker.bootstrap, log_dir=log_dir)
        print(json.dumps(figures, indent=2))
    finally:
        await drop_database(pg.url, name)
        pg.stop()
        broker.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="metrics report queries over a large history")
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(_main(parser.parse_args().rows))
