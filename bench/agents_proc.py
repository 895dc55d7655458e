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

import uvloop

from bench.pipeline import Desk, simulated_agents


@dataclass
class AgentsProcess:
    """A running agents process; ``stop()`` ends it and returns its statistics."""

    process: subprocess.Popen[str]

    @classmethod
    def start(cls, desk: Desk, think_s: float) -> AgentsProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.agents_proc", desk.to_json(), str(think_s)],
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


async def _main(desk: Desk, think_s: float) -> None:
    stop, ready = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    agents = asyncio.create_task(simulated_agents(desk, stop, think_s, ready))
    await asyncio.wait([asyncio.create_task(ready.wait()), agents], return_when="FIRST_COMPLETED")
    if agents.done():
        agents.result()  # raises what went wrong
    print("ready", flush=True)
    print(json.dumps(asdict(await agents)), flush=True)


if __name__ == "__main__":
    # On the services' loop: the agents share the machine with the desk they measure.
    uvloop.run(_main(Desk.from_json(sys.argv[1]), float(sys.argv[2])))
