"""An open-loop HTTP load generator: requests start on schedule whatever the answers' pace, so a
slow server shows up as latency, not as a politely lower offered rate."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.http1 import Client, HTTPError


@dataclass
class LoadResult:
    offered_rate: float
    duration_s: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def failed(self) -> int:
        return self.sent - self.ok


async def run_load(
    url: str,
    *,
    rate: float,
    duration_s: float,
    body: Callable[[int], dict[str, Any]],
    headers: dict[str, str],
    keep_bodies: bool = False,
    connections: int = 100,
) -> LoadResult:
    """POST ``body(i)`` to ``url`` ``rate`` times a second for ``duration_s`` seconds.

    Latency counts from when a request was due, not from when a connection was free, so a
    server that falls behind shows its backlog (no coordinated omission). At most
    ``connections`` requests are in flight; the others wait for a connection, untimed."""
    result = LoadResult(offered_rate=rate, duration_s=duration_s)
    async with Client(max_connections=connections, timeout=30, headers=headers) as client:

        async def one(i: int, due: float) -> None:
            try:
                answer = await client.post(url, json=body(i))
            except HTTPError as exc:
                result.errors[type(exc).__name__] += 1
                return
            result.latencies_s.append(time.perf_counter() - due)
            result.statuses[answer.status_code] += 1
            if keep_bodies and answer.status_code == 202:
                result.bodies.append(answer.json())

        total = int(rate * duration_s)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        result.duration_s = max(time.perf_counter() - start, duration_s)
    return result
