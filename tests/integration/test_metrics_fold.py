"""Folding a conversation event in the metrics store: its cost does not grow with the
conversation's length, and however the events arrive (late, redelivered, before folds were
kept) the facts and waits equal those of folding the whole timeline again."""

import random
from datetime import timedelta

import pytest
from sqlalchemy import event, text

from services.metrics.calendar_store import CalendarStore
from services.metrics.calendars import BusinessCalendar
from services.metrics.store import MetricsStore
from shared.db import make_engine, make_sessionmaker
from shared.events import Channel, Priority
from tests.integration.scripted import Script

READ = """SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0)
          FROM pg_stat_xact_user_tables WHERE schemaname = 'metrics'"""


@pytest.fixture
async def engine(database_url):
    engine = make_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


def long_chat(messages):
    """A chat whose customer writes ``messages`` times, answered every tenth message."""
    script = Script(Channel.CHAT, Priority.HIGH).message(0).classified(0).assigned(1, "alice")
    for n in range(1, messages):
        script.message(n * 10).classified(n * 10)
        if n % 10 == 0:
            script.replied(n * 10 + 5, "alice")
    return script.resolved(messages * 10 + 5, "alice")


async def facts_and_waits(sessions, conversation_id):
    async with sessions() as session:
        conversation = (
            (
                await session.execute(
                    text("""SELECT * FROM metrics.conversations WHERE conversation_id = :id"""),
                    {"id": conversation_id},
                )
            )
            .one()
            ._asdict()
        )
        waits = (
            await session.execute(
                text("SELECT * FROM metrics.waits WHERE conversation_id = :id ORDER BY seq"),
                {"id": conversation_id},
            )
        ).all()
    conversation.pop("changed_xid")
    return conversation, [w._asdict() for w in waits]


async def fold_again(sessions, conversation_id):
    async with sessions() as session, session.begin():
        await MetricsStore(session).refresh(conversation_id)


async def test_folding_an_event_reads_as_much_in_a_long_conversation_as_in_a_short_one(engine):
    sessions = make_sessionmaker(engine)
    statements = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(1))
    script = long_chat(600)
    cost = {}  # per kind of event: (statements, rows read in the metrics schema) of each
    for n, conversation_event in enumerate(script.events):
        async with sessions() as session, session.begin():
            before = await session.scalar(text(READ))
            statements.clear()
            assert await MetricsStore(session).apply(conversation_event)
            issued = len(statements)
            read = int(await session.scalar(text(READ)) - before)
        if 100 <= n:  # the first answer given: from here on events repeat themselves
            cost.setdefault(type(conversation_event).__name__, []).append((issued, read))
    # An event of each kind costs as much at the end of 1,260 events as after the first 100:
    # no statement reads the timeline or the waits before it.
    assert sorted(cost) == ["AgentReplied", "Classified", "MessageReceived", "Resolved"]
    for kind, costs in cost.items():
        if len(costs) == 1:
            continue  # resolved
        early, late = costs[: len(costs) // 4], costs[-len(costs) // 4 :]
        assert max(late) <= max(early), kind
        assert max(read for _, read in late) < 20, kind
    conversation, waits = await facts_and_waits(sessions, script.id)
    assert conversation["customer_messages"] == 600 and len(waits) == 59


async def test_events_arriving_late_and_twice_give_the_facts_of_the_whole_timeline(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        await CalendarStore(session).put_calendar(
            BusinessCalendar.parse("l2", "UTC", {"mon": [["09:00", "12:00"]]}),
            channels=[],
            teams=["l2"],
        )
    chat = (
        Script(Channel.EMAIL, Priority.NORMAL)
        .message(0)
        .classified(0)
        .assigned(10, "alice", team="l1")
    )
    for n in range(1, 40):
        chat.message(n * 600)
        if n % 4 == 0:
            chat.replied(n * 600 + 300, "alice" if n < 20 else "bob")
        if n == 20:
            chat.assigned(n * 600 + 60, "bob", team="l2")  # another team, another calendar
        if n == 30:
            chat.resolved(n * 600 + 400, "bob").reopened(n * 600 + 500)
    chat.classified(timedelta(hours=1) + chat.t0)
    arrivals = list(chat.events)
    random.Random(13).shuffle(arrivals)
    arrivals += arrivals[:10]  # redelivered
    for conversation_event in arrivals:
        async with sessions() as session, session.begin():
            await MetricsStore(session).apply(conversation_event)
    as_folded = await facts_and_waits(sessions, chat.id)
    await fold_again(sessions, chat.id)
    assert as_folded == await facts_and_waits(sessions, chat.id)
    assert as_folded[0]["calendar"] == "l2" and len(as_folded[1]) > 5


async def test_a_conversation_folded_before_folds_were_kept_is_folded_whole_once(engine):
    sessions = make_sessionmaker(engine)
    chat = Script(Channel.CHAT, Priority.LOW).message(0).assigned(5, "alice").replied(20, "alice")
    chat.message(30).replied(40, "alice")
    *earlier, last = chat.events
    async with sessions() as session, session.begin():
        for conversation_event in earlier:
            await MetricsStore(session).apply(conversation_event)
        await session.execute(text("UPDATE metrics.timeline SET state = NULL"))
        await MetricsStore(session).apply(last)
    as_folded = await facts_and_waits(sessions, chat.id)
    await fold_again(sessions, chat.id)
    assert as_folded == await facts_and_waits(sessions, chat.id)
    assert [w["seconds"] for w in as_folded[1]] == [20, 10]
