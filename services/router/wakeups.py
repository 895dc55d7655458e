"""Agent long-poll wake-ups across replicas, through PostgreSQL LISTEN/NOTIFY.

Any replica that gives an agent something new notifies on commit; every replica listens and
wakes its own waiters for that agent. Waiters also re-check on a short period, so a lost
notification (a dropped listening connection) delays an answer, never loses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import asyncpg

from services.router.store import AGENT_CHANNEL

log = logging.getLogger(__name__)


class AgentWakeups:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._conn: asyncpg.Connection | None = None

    def event_for(self, agent_id: str) -> asyncio.Event:
        """The event the next notification for ``agent_id`` will set; take it before checking
        state, so a notification that lands in between is not missed."""
        return self._events[agent_id]

    def _notify(self, agent_id: str) -> None:
        event = self._events.pop(agent_id, None)
        if event is not None:
            event.set()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._notify(payload)

    async def _listen_once(self) -> None:
        """Listen on one connection until it closes."""
        lost = asyncio.Event()
        self._conn = await asyncpg.connect(self.dsn)
        self._conn.add_termination_listener(lambda _conn: lost.set())
        await self._conn.add_listener(AGENT_CHANNEL, self._on_notification)
        await lost.wait()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection."""
        while True:
            try:
                await self._listen_once()
                log.warning("agent wake-up listener connection closed, reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("agent wake-up listener lost, reconnecting", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
            finally:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.close()
