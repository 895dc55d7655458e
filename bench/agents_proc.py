"""The simulated agents in a process of their own.

In the load generator's process they shared its event loop: an HTTP client serving 60
long-polling agents delayed the generator's own requests, and the bench reported seconds of
"ingest latency" while ingest answered in tens of milliseconds (its /metrics/service
histogram). Started by ``AgentsProcess``; prints ``ready`` once every agent is online, and
its statistics as one JSON line when it receives SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from bench.pipeline import AgentStats, Desk, simulated_agents
from shared.settings import Topics


@dataclass
class AgentsProcess:
    """A running agents process; ``stop()`` ends it and returns its statistics."""

    process: subprocess.Popen[str]

    @classmethod
    def start(cls, desk: Desk, think_s: float) -> AgentsProcess:
        spec = {
            "urls": desk.urls,
            "keys": desk.keys,
            "agents": desk.agents,
            "database_url": desk.database_url,
            "namespace": desk.topics.namespace,
            "bootstrap": desk.bootstrap,
            "think_s": think_s,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.agents_proc", json.dumps(spec)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "ready":
            process.kill()
            raise RuntimeError(f"simulated agents did not start (said {line!r})")
        return cls(process)

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return stats


async def _main(spec: dict[str, Any]) -> None:
    desk = Desk(
        urls=spec["urls"],
        processes={},
        keys=spec["keys"],
        agents=spec["agents"],
        database_url=spec["database_url"],
        topics=Topics(namespace=spec["namespace"]),
        bootstrap=spec["bootstrap"],
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    agents = asyncio.create_task(simulated_agents(desk, stop, spec["think_s"], ready))
    await asyncio.wait([asyncio.create_task(ready.wait()), agents], return_when="FIRST_COMPLETED")
    if agents.done():
        agents.result()  # raises what went wrong
    print("ready", flush=True)
    stats: AgentStats = await agents
    body = asdict(stats)
    body.pop("seen")
    print(json.dumps(body), flush=True)


if __name__ == "__main__":
    asyncio.run(_main(json.loads(sys.argv[1])))
