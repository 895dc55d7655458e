"""The whole desk at the given rates, every step whatever the last one's latency (the
``pipeline`` part stops at the first step whose p99 passes 250 ms): for comparing two
versions at and past saturation, run alone, alternating them.

``python -m bench.desk_steps --rates 200,250,300 --step-s 10`` prints a JSON line per step:
offered and achieved rate, p50 and p99 ingest → assigned (ms), whether the desk drained, and
each process's CPU share (cores)."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from bench.desk_load import DeskRun, say
from devtools.stack import Broker, Postgres


async def steps(rates: list[int], step_s: float) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-desk-steps-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    pg = Postgres()
    try:
        async with DeskRun(broker, pg, log_dir) as run:
            await run.warm_up("desk-steps", rates[0] // 2)
            for rate in rates:
                say(f"desk-steps: {rate} msg/s offered for {step_s:.0f} s")
                step = await run.step(rate, step_s)
                line = {
                    "offered": rate,
                    "achieved": step["achieved_rate"],
                    "assigned": step["assigned"],
                    "p50_ms": step["assigned_p50_ms"],
                    "p99_ms": step["assigned_p99_ms"],
                    "drained": step["drained"],
                    "cpu_share": step["cpu_share"],
                }
                print(json.dumps(line), flush=True)
    finally:
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the whole desk at given rates")
    parser.add_argument("--rates", default="200,250,300", help="msg/s, comma-separated")
    parser.add_argument("--step-s", type=float, default=10.0)
    arguments = parser.parse_args()
    asyncio.run(steps([int(r) for r in arguments.rates.split(",")], arguments.step_s))
