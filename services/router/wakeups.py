"""Agent long-poll wake-ups across replicas, through PostgreSQL LISTEN/NOTIFY.

Any replica that gives an agent something new notifies on commit; every replica listens and
wakes its own waiters for that agent. A waiter queries nothing until it is woken: the only
safety net is that a (re)connected listener wakes every waiter once, since notifications sent
while it was not listening are lost. Each agent has at most ``max_waits_per_agent`` waiters
in a process; a new one past the cap supersedes the oldest, which is answered at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import asyncpg

from services.router.statements import AGENT_CHANNEL

log = logging.getLogger(__name__)


class Waiter:
    """One waiting long-poll: woken by news for its agent, a listener reconnect, or a newer
    wait of the same agent past the cap (then ``superseded``)."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self.superseded = False


class AgentWakeups:
    def __init__(self, dsn: str, *, max_waits_per_agent: int) -> None:
        self.dsn = dsn
        self.max_waits_per_agent = max_waits_per_agent
        # Only agents somebody waits for have an entry; the oldest waiter comes first.
        self._waiters: dict[str, deque[Waiter]] = {}

    def waiting_agents(self) -> int:
        """How many agents have a waiter in this process."""
        return len(self._waiters)

    @contextmanager
    def waiting(self, agent_id: str) -> Iterator[Waiter]:
        """Register a waiter for ``agent_id`` for the duration of the block; enter it before
        checking state, so a notification that lands in between is not missed."""
        waiters = self._waiters.setdefault(agent_id, deque())
        while len(waiters) >= self.max_waits_per_agent:
            oldest = waiters.popleft()
            oldest.superseded = True
            oldest.woken.set()
        waiter = Waiter()
        waiters.append(waiter)
        try:
            yield waiter
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._waiters.get(agent_id) is waiters:
                del self._waiters[agent_id]

    def _notify(self, agent_id: str) -> None:
        for waiter in self._waiters.get(agent_id, ()):
            waiter.woken.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.woken.set()

    def _on_notification(self, payload: str) -> None:
        self._notify(payload)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection; whatever was notified
        while nobody listened is lost, so every waiter checks once on each (re)connection."""
        await listen(
            self.dsn, AGENT_CHANNEL, self._on_notification, self._wake_all, "router-wakeups"
        )


async def listen(
    dsn: str,
    channel: str,
    on_payload: Callable[[str], None],
    on_connect: Callable[[], None],
    name: str,
) -> None:
    """Run ``on_payload`` for each notification on ``channel`` until cancelled, on a connection
    of its own, reconnecting after a lost one; ``on_connect`` after each (re)connection."""

    async def listen_once() -> None:
        lost = asyncio.Event()
        conn = await asyncpg.connect(
            dsn, server_settings={"application_name": f"switchboard-{name}"}
        )
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(channel, lambda _c, _pid, _ch, payload: on_payload(payload))
            on_connect()
            await lost.wait()
        finally:
            if not conn.is_closed():
                await conn.close()

    while True:
        try:
            await listen_once()
            log.warning("listener connection closed, reconnecting", extra={"listener": name})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listener lost, reconnecting", extra={"listener": name, "error": repr(exc)})
            await asyncio.sleep(1.0)
