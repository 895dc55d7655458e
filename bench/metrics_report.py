"""Metrics report queries over a large history: 1,000,000 conversations (100,000 in --quick),
generated in the database, then the summary, a grouped summary, a filtered one, a time series
and a summary in business time, each timed through the same store code the API uses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from services.metrics.store import Filters, report
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


async def run(database_url: str, conversations: int, *, repeats: int = 3) -> dict[str, Any]:
    engine = make_engine(database_url, pool_size=2)
    started = time.perf_counter()
    async with engine.begin() as conn:
        for statement in FILL:
            await conn.execute(text(statement), {"n": conversations})
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE metrics.conversations"))
        await conn.execute(text("ANALYZE metrics.waits"))
    fill_s = time.perf_counter() - started
    sessions = make_sessionmaker(engine)
    week = Filters(start=datetime(2026, 10, 8, tzinfo=UTC), end=datetime(2026, 10, 15, tzinfo=UTC))
    queries: dict[str, Callable[[], Awaitable[object]]] = {
        "summary, all": lambda: report(sessions, Filters()),
        "summary by channel × priority (groups)": lambda: report(
            sessions, Filters(), group_by=("channel", "priority")
        ),
        "summary, one channel, one week": lambda: report(
            sessions, Filters(channel="chat", start=week.start, end=week.end)
        ),
        "timeseries 1h, all": lambda: report(sessions, Filters(), interval="1h"),
        "summary, all, business time": lambda: report(sessions, Filters(), clock="business"),
    }
    timings: dict[str, float] = {}
    for name, query in queries.items():
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            await query()
            best = min(best, time.perf_counter() - t0)
        timings[name] = round(best * 1000, 1)
    await engine.dispose()
    return {"conversations": conversations, "fill_s": round(fill_s, 1), "best_ms": timings}


async def _main(rows: int) -> None:
    import json

    from devtools.stack import Postgres, create_database, drop_database, migrate, unique_name

    pg = Postgres()
    name = unique_name("bench_reports")
    await create_database(pg.url, name)
    try:
        await asyncio.to_thread(migrate, pg.url_for(name))
        print(f"[bench] metrics reports over {rows:,} conversations", flush=True)
        print(json.dumps(await run(pg.url_for(name), rows), indent=2))
    finally:
        await drop_database(pg.url, name)
        pg.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="metrics report queries over a large history")
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(_main(parser.parse_args().rows))
