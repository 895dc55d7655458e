"""The router's unit of work: one transaction, committed on success, rolled back on error;
after a commit the outbox relay is woken to publish what the transaction wrote. Statements
run on asyncpg directly, on the engine's pooled connections (shared/rawdb.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from services.router.context import Context
from services.router.model import Policy
from services.router.routing.rules import RulesSource
from services.router.store import RouterStore
from shared import rawdb
from shared.outbox import OutboxRelay
from shared.settings import Topics


class UnitOfWork:
    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay | None,
        topics: Topics,
        rules: RulesSource,
        policy: Policy,
    ) -> None:
        self.engine = engine
        self.relay = relay
        self.topics = topics
        self.rules = rules
        self.policy = policy

    @asynccontextmanager
    async def __call__(self, now: datetime | None = None) -> AsyncIterator[Context]:
        """A transaction with the rules in force and the time it runs at."""
        async with rawdb.transaction(self.engine) as db:
            ctx = Context(
                RouterStore(db),
                self.topics,
                self.rules.current(),
                self.policy,
                now or datetime.now(UTC),
            )
            yield ctx
            if ctx.outbox:
                await ctx.store.enqueue(ctx.outbox)
        if ctx.outbox and self.relay is not None:  # else a relay process is notified
            self.relay.wake()


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[RouterStore]:
    """A store for reads only: nothing is written, nothing published. Each statement is its
    own transaction (autocommit): under READ COMMITTED each statement has its own snapshot
    anyway, and BEGIN and ROLLBACK were two round trips of a poll's five."""
    async with rawdb.autocommit(engine) as db:
        yield RouterStore(db)
