"""Presence that follows the agent's frontend. An agent online whose frontend has neither
long-polled nor sent a heartbeat for ``presence_timeout_s`` is set away by the sweep
(``sweeps.away_unheard``), and its unanswered conversations are re-routed, as when it goes
away itself.

Hearing from a frontend costs a request nothing but a dict entry: each process keeps when it
last heard from each agent, and writes what it heard every ``presence_flush_s`` in one
statement (``router.agents.last_seen_at``, on the database's clock). The sweep runs where
the queue sweep runs (``intake`` and ``all`` processes) and reads the table, so it sees what
every API process heard; after a restart an agent stays online only until its last time
heard from is ``presence_timeout_s`` old, unless its frontend is heard from again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.router.store import RouterStore
from shared import rawdb

log = logging.getLogger(__name__)

PRESENCE_TIMEOUT = "presence_timeout"  # the reason of the status change


class Presence:
    """When this process last heard from each agent's frontend, until it is written."""

    def __init__(self, engine: AsyncEngine, *, flush_s: float) -> None:
        self.engine = engine
        self.flush_s = flush_s
        self._heard: dict[str, float] = {}  # agent id -> time.monotonic() when last heard

    def heard(self, agent_id: str) -> None:
        """The agent's frontend spoke (a long-poll, a heartbeat)."""
        self._heard[agent_id] = time.monotonic()

    async def flush(self) -> int:
        """Write what was heard since the last flush (agents whose row was busy are kept for
        the next one); how many agents were written."""
        if not self._heard:
            return 0
        heard, self._heard = self._heard, {}
        now = time.monotonic()
        try:
            async with rawdb.autocommit(self.engine) as db:
                busy = await RouterStore(db).record_heard(
                    {agent: max(now - at, 0.0) for agent, at in heard.items()}
                )
        except BaseException:
            self._keep(heard, heard)
            raise
        self._keep(heard, busy)
        return len(heard) - len(busy)

    def _keep(self, heard: dict[str, float], agents: Iterable[str]) -> None:
        """Hear ``agents`` of ``heard`` again, unless heard from since."""
        for agent in agents:
            self._heard.setdefault(agent, heard[agent])

    async def run(self) -> None:
        """Flush every ``flush_s`` until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(self.flush_s)
                try:
                    await self.flush()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("presence flush failed", extra={"error": repr(exc)})
        finally:
            try:
                await self.flush()
            except Exception as exc:
                log.warning("last presence flush failed", extra={"error": repr(exc)})
