"""Every statement the router runs to apply inbound messages uses an index, on a database that
already holds history: statements are captured from a real batch (and from the one-message
path), then explained with their parameters; no plan may scan conversations or messages.

A plan that is fast on an empty table can be a sequential scan on a million rows, so this runs
on a schema holding 30,000 conversations and 90,000 messages (bench/history.py), analyzed."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from bench.history import seed_router_history
from services.router import handlers
from services.router.intake import receive_messages
from services.router.model import Policy
from services.router.routing.rules import DEFAULT_RULES_PATH, RulesSource
from services.router.store import RouterStore
from services.router.uow import UnitOfWork
from shared.db import make_engine, make_sessionmaker
from shared.events import AgentStatus, Channel
from shared.settings import Topics
from tests.integration.routerkit import inbound

HISTORY = 30_000
# Tables whose size grows with history; agents and their slots are the desk's staff.
GROWING = {"conversations", "messages", "outbox"}


class _Relay:
    def wake(self) -> None:
        pass


def _scans(plan: Any) -> list[str]:
    """Relations the plan reads with a sequential scan."""
    found = []
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan":
            found.append(plan.get("Relation Name", "?"))
        for value in plan.values():
            found += _scans(value)
    elif isinstance(plan, list):
        for item in plan:
            found += _scans(item)
    return found


@pytest.fixture
async def history_db(database_url):
    await seed_router_history(database_url, HISTORY, progress=False)
    engine = make_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


async def test_applying_inbound_messages_scans_no_table_that_grows_with_history(history_db):
    captured: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith(("SELECT", "WITH", "INSERT", "UPDATE")):
            captured.append((statement, parameters))

    uow = UnitOfWork(
        history_db,
        _Relay(),  # type: ignore[arg-type]
        Topics(namespace="plans"),
        RulesSource(DEFAULT_RULES_PATH),
        Policy(),
    )
    now = datetime.now(UTC)
    async with uow(now) as ctx:
        for i in range(3):
            await handlers.upsert_agent(
                ctx,
                agent_id=f"plan-agent-{i}",
                name="plan",
                skills={"general": 2, "security": 2},
                languages=["en"],
                capacity={"chat": 2},
            )
            await ctx.store.set_status(f"plan-agent-{i}", AgentStatus.ONLINE)
    # New threads, a follow-up, and threads of the history: open ones and resolved ones.
    batch = [inbound(f"plans-{i}", "my account was hacked") for i in range(5)]
    batch.append(inbound("plans-0", "any news?"))
    batch += [
        inbound("x", "hello again", channel=Channel.CHAT).model_copy(
            update={"conversation_key": f"hist:{k}"}
        )
        for k in (5, HISTORY * 9 // 10 - 10, HISTORY * 9 // 10 - 2_000)
    ]
    event.listen(history_db.sync_engine, "before_cursor_execute", capture)
    try:
        async with uow(now) as ctx:
            await receive_messages(ctx, batch)
        async with uow(now) as ctx:
            await handlers.receive_message(ctx, inbound("plans-single", "my deposit is missing"))
    finally:
        event.remove(history_db.sync_engine, "before_cursor_execute", capture)

    assert len(captured) >= 8
    scans: dict[str, list[str]] = {}
    async with history_db.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        for statement, parameters in captured:
            rows = await raw.fetch(f"EXPLAIN (FORMAT JSON) {statement}", *parameters)
            plan = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
            growing = [r for r in _scans(plan) if r in GROWING]
            if growing:
                scans[" ".join(statement.split())[:160]] = growing
        total = (await conn.execute(text("SELECT count(*) FROM router.conversations"))).scalar()
    assert total >= HISTORY
    assert scans == {}


async def test_looking_a_conversation_up_by_key_or_message_scans_nothing(history_db):
    """The lookups of ``GET /v1/conversations?key=|message_id=`` (and of tickets) go through
    indexes on a schema with history, and find the thread's latest conversation."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        captured.append((statement, parameters))

    sessions = make_sessionmaker(history_db)
    # hist:5 had a conversation resolved long ago and has a newer one; hist:7 only one.
    twice, once = "hist:5", f"hist:{HISTORY // 10 + 7}"
    event.listen(history_db.sync_engine, "before_cursor_execute", capture)
    try:
        async with sessions() as session:
            store = RouterStore(session)
            latest = await store.latest_for_key(twice)
            only = await store.latest_for_key(once)
            nothing = await store.latest_for_key("hist:none")
            holder = await store.conversation_of_message(
                uuid.UUID(hashlib.md5(f"hist-msg-{HISTORY - 1}-0".encode()).hexdigest())
            )
    finally:
        event.remove(history_db.sync_engine, "before_cursor_execute", capture)

    newest = uuid.UUID(hashlib.md5(f"hist-conv-{HISTORY * 9 // 10 + 5}".encode()).hexdigest())
    assert latest is not None and latest.id == newest
    assert only is not None and only.conversation_key == once and nothing is None
    assert holder is not None
    assert holder.id == uuid.UUID(hashlib.md5(f"hist-conv-{HISTORY - 1}".encode()).hexdigest())
    async with history_db.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        for statement, parameters in captured:
            rows = await raw.fetch(f"EXPLAIN (FORMAT JSON) {statement}", *parameters)
            plan = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
            assert [r for r in _scans(plan) if r in GROWING] == [], statement
