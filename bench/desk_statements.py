"""What PostgreSQL does for the whole desk at one rate: ``pg_stat_statements`` over a step,
on a PostgreSQL of its own started with the extension loaded (a server that does not preload
it, as the machine's here, cannot give these figures: ``devtools.stack.Postgres``'s
``preload``).

``python -m bench.desk_statements --rate 200 --seconds 20`` warms the desk up at half the
rate, resets the statistics, offers the rate, then prints a JSON line (rate achieved, each
process's CPU share, statements in all and per message) and the ``--top`` statements by
total execution time: calls, total ms, mean ms, rows, the statement's start."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import asyncpg

from bench.desk_load import DeskRun, say
from devtools.stack import Broker, Postgres

_TOP = """SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
                 round(mean_exec_time::numeric, 3) AS mean_ms, rows,
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 150) AS statement
          FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1"""


async def statements(rate: int, seconds: float, top: int) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-desk-statements-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    pg = Postgres(preload=["pg_stat_statements"])
    admin = await asyncpg.connect(pg.url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        async with DeskRun(broker, pg, log_dir) as run:
            await run.warm_up("desk-statements", rate // 2)
            await admin.execute("SELECT pg_stat_statements_reset()")
            say(f"desk-statements: {rate} msg/s offered for {seconds:.0f} s")
            step = await run.post(rate, seconds)
            calls = await admin.fetchval("SELECT sum(calls) FROM pg_stat_statements")
            rows = await admin.fetch(_TOP, top)
        messages = step["achieved_rate"] * seconds
        summary: dict[str, Any] = {
            "achieved": step["achieved_rate"],
            "cpu_share": step["cpu_share"],
            "statements": int(calls),
            "statements_per_message": round(int(calls) / messages, 1) if messages else None,
        }
        print(json.dumps(summary))
        for r in rows:
            print(r["calls"], r["total_ms"], r["mean_ms"], r["rows"], r["statement"], sep="\t")
    finally:
        await admin.close()
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the desk's statements at one rate")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(statements(arguments.rate, arguments.seconds, arguments.top))
