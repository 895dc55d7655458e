"""Metrics' SLA marks leave through its outbox: a sweep whose transaction rolls back announces
nothing, one that commits has its events published by the relay onto the sla-events topic (and
nothing onto the router's conversation-events topic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.metrics.sla import sweep_sla
from services.metrics.sla_store import OUTBOX_SCHEMA
from shared.db import make_sessionmaker
from shared.events import SlaAtRisk, SlaBreached, sla_event_adapter
from shared.kafka import TopicGuard, ensure_topics, make_producer
from shared.outbox import OutboxRelay
from shared.settings import CommonSettings, Topics
from tests.conftest import read_topic

pytestmark = pytest.mark.asyncio

# Fails every transaction that wrote to metrics.outbox, at its commit: after the marks and the
# events were written, as a lost connection or a failed commit would.
REFUSE_COMMIT = [
    """CREATE FUNCTION metrics.refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'commit refused (test)'; END $$""",
    """CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON metrics.outbox
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION metrics.refuse_commit()""",
]


async def _execute(db: Any, *statements: str, **params: Any) -> None:
    async with db.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement), params)


async def _scalar(db: Any, statement: str) -> Any:
    async with db.connect() as conn:
        return await conn.scalar(text(statement))


@pytest.fixture
async def relay_parts(broker: Any, db: Any, topics: Topics) -> Any:
    settings = CommonSettings(kafka_bootstrap=broker.bootstrap, topics=topics)
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    yield OutboxRelay(db, producer, TopicGuard(settings), schema=OUTBOX_SCHEMA)
    await producer.stop()


async def test_a_sweep_that_rolls_back_announces_nothing_and_one_that_commits_is_published(
    broker: Any, db: Any, topics: Topics, relay_parts: OutboxRelay
) -> None:
    relay, sessions, now = relay_parts, make_sessionmaker(db), datetime.now(UTC)
    # A 60 s target, and a conversation waiting 70 s for its first reply: at risk and breached.
    await _execute(
        db,
        "INSERT INTO metrics.sla_policies VALUES ('urgent', '*', 60, 3600)",
        """INSERT INTO metrics.conversations (conversation_id, channel, priority, opened_at,
             first_message_at)
           VALUES (gen_random_uuid(), 'chat', 'urgent', :opened, :opened)""",
        opened=now - timedelta(seconds=70),
    )
    conversation_id = str(await _scalar(db, "SELECT conversation_id FROM metrics.conversations"))
    await _execute(db, *REFUSE_COMMIT)

    with pytest.raises(DBAPIError, match="commit refused"):
        await sweep_sla(sessions, topics, now, {0: now})

    assert await _scalar(db, "SELECT count(*) FROM metrics.outbox") == 0
    assert await _scalar(db, "SELECT sla_breached_at FROM metrics.conversations") is None
    assert await relay.flush() == 0
    assert await read_topic(broker.bootstrap, topics.sla_events) == []

    await _execute(db, "DROP TRIGGER refuse_commit ON metrics.outbox")
    assert await sweep_sla(sessions, topics, now, {0: now}) == 2
    # Written with the marks, and not on the topic until the relay publishes them.
    assert await _scalar(db, "SELECT count(*) FROM metrics.outbox") == 2
    assert await read_topic(broker.bootstrap, topics.sla_events) == []

    assert await relay.flush() == 2
    await relay.finish()
    assert await _scalar(db, "SELECT count(*) FROM metrics.outbox") == 0
    records = await read_topic(broker.bootstrap, topics.sla_events)
    events = [sla_event_adapter.validate_json(r.value) for r in records]
    assert sorted(type(e).__name__ for e in events) == [SlaAtRisk.__name__, SlaBreached.__name__]
    assert {str(e.conversation_id) for e in events} == {conversation_id}
    assert {r.key.decode() for r in records} == {conversation_id}
    # The router's topic carries none of them: each topic has one writer.
    assert await read_topic(broker.bootstrap, topics.conversation_events) == []

    # A later sweep finds them marked: nothing is announced twice.
    assert await sweep_sla(sessions, topics, now + timedelta(seconds=1), {0: now}) == 0
