"""The metrics report cache against the real database: whatever changed since its previous
report (events folded, CSAT, SLA policies, a conversation moved to another day or deleted, a
transaction that was still open during the previous report), the next report equals one
computed by a fresh cache that reads everything."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from services.metrics.report import Filters
from services.metrics.report_cache import ReportCache
from services.metrics.sla_store import SlaStore
from services.metrics.store import MetricsStore
from shared.db import make_engine, make_sessionmaker
from shared.events import Channel, Priority
from tests.integration.scripted import Script

DAY1 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
GROUPS = ("channel", "priority")


@pytest.fixture
async def sessions(database_url):
    engine = make_engine(database_url, pool_size=4)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def fold(sessions, *scripts):
    async with sessions() as session, session.begin():
        for script in scripts:
            for event in script.events:
                await MetricsStore(session).apply(event)


async def execute(sessions, call):
    async with sessions() as session, session.begin():
        return await call(MetricsStore(session))


async def reports(cache):
    """Every kind of report, from one cache."""
    return [
        await cache.summary(Filters(), group_by=GROUPS, clock="calendar"),
        await cache.summary(Filters(start=DAY2), group_by=(), clock="business"),
        await cache.report(Filters(), interval="1h", group_by=("agent_id",)),
        await cache.report(Filters(channel="email"), interval="1d"),
    ]


async def assert_fresh(cache, sessions):
    """The long-lived cache's reports equal those of one that reads every row now."""
    assert await reports(cache) == await reports(ReportCache(sessions))


def chat(t0, reply_s=30, agent="alice"):
    return (
        Script(Channel.CHAT, Priority.URGENT, t0=t0)
        .message(0)
        .classified(0)
        .assigned(2, agent, "day")
        .replied(reply_s, agent)
    )


async def test_a_report_sees_every_change_made_since_the_previous_one(sessions):
    cache = ReportCache(sessions)
    a, b = chat(DAY1), chat(DAY2, reply_s=90, agent="bob")
    await fold(sessions, a, b)
    (total, _groups), *_ = await reports(cache)
    assert total.conversations == 2
    assert total.measures["first_response_s"].p50 == 30
    await assert_fresh(cache, sessions)

    # Later events of a conversation already read: its row and its waits are rewritten.
    a.message(100).replied(160, "alice").resolved(200, "alice")
    await fold(sessions, a)
    total, _ = await cache.summary(Filters(), group_by=(), clock="calendar")
    assert total.measures["next_reply_s"].count == 1
    assert total.measures["resolution_s"].max == 200
    await assert_fresh(cache, sessions)

    # A CSAT score and a new SLA policy.
    await execute(sessions, lambda s: s.put_csat(a.id, 4, None, DAY2))
    await execute(sessions, lambda s: SlaStore(s.session).put_policy("urgent", "chat", 60, 3600))
    total, _ = await cache.summary(Filters(), group_by=(), clock="calendar")
    assert (total.extra["csat_count"], total.extra["csat_mean"]) == (1, 4.0)
    assert total.extra["sla_first_response_attainment"] == 0.5  # 30 s met, 90 s missed
    await assert_fresh(cache, sessions)


async def test_a_transaction_open_during_a_report_is_seen_by_the_next_one(sessions):
    cache = ReportCache(sessions)
    await fold(sessions, chat(DAY1))
    late = chat(DAY1 + timedelta(hours=1), agent="carol")
    async with sessions() as session, session.begin():
        for event in late.events:
            await MetricsStore(session).apply(event)
        # Not committed yet: the report cannot see it, and must not forget it either.
        total, _ = await cache.summary(Filters(), group_by=(), clock="calendar")
        assert total.conversations == 1
    total, _ = await cache.summary(Filters(), group_by=(), clock="calendar")
    assert total.conversations == 2
    await assert_fresh(cache, sessions)


async def test_a_conversation_moved_to_another_day_or_deleted_leaves_its_old_day(sessions):
    cache = ReportCache(sessions)
    a, b = chat(DAY1), chat(DAY1 + timedelta(hours=2), agent="bob")
    await fold(sessions, a, b)
    await cache.summary(Filters(), group_by=(), clock="calendar")

    async def move(store):
        # As a refresh writes it: the conversation and its waits (which carry its opening).
        for table in ("conversations", "waits"):
            await store.session.execute(
                text(f"UPDATE metrics.{table} SET opened_at = :at WHERE conversation_id = :id"),
                {"at": DAY2 + timedelta(days=3), "id": a.id},
            )

    await execute(sessions, move)
    day1 = Filters(start=DAY1 - timedelta(hours=9), end=DAY2)
    total, _ = await cache.summary(day1, group_by=(), clock="calendar")
    assert total.conversations == 1
    await assert_fresh(cache, sessions)

    async def delete(store):
        await store.session.execute(
            text("DELETE FROM metrics.conversations WHERE conversation_id = :id"), {"id": b.id}
        )

    await execute(sessions, delete)
    total, _ = await cache.summary(day1, group_by=(), clock="calendar")
    assert total.conversations == 0
    await assert_fresh(cache, sessions)
