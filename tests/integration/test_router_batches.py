"""The router applies a poll's inbound records as one batch: a record the database refuses
costs only itself (dead-lettered with the reason), and every other record of its batch is
applied once, with no agent over capacity."""

import json

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import inbound, put_agent, scalar, send


async def test_a_record_the_database_refuses_is_dead_lettered_and_its_batch_applied(
    common, ids, broker, topics, db
):
    app = create_app(RouterSettings(**common, kafka_partitions=1))
    messages = [inbound(f"batch-{i}", f"question {i} about my deposit") for i in range(40)]
    # Ingest refuses NUL now; a record from before that (or from another producer) still
    # parses, and PostgreSQL refuses its text.
    bad = messages[25].model_copy(update={"text": "broken \x00 text"})
    messages[25] = bad
    a, b = ids.agent_ids[:2]
    async with running(app) as client:
        await put_agent(client, ids, a, capacity={"chat": 3})
        await put_agent(client, ids, b, capacity={"chat": 2})
        await send(broker, topics, *messages)

        async def stored():
            return await scalar(db, "SELECT count(*) FROM router.conversations") == 39 or None

        await eventually(stored, timeout=30, what="39 conversations stored")

        async def dead_lettered():
            return [
                json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.dead_letter)
            ]

        letters = await eventually(dead_lettered, what="the bad record dead-lettered")
    assert [x["key"] for x in letters] == [bad.conversation_key]
    assert "0x00" in letters[0]["reason"]
    assert await scalar(db, "SELECT count(*) FROM router.messages") == 39
    assert (
        await scalar(db, "SELECT count(*) FROM router.conversations WHERE state = 'assigned'") == 5
    )
    assert await scalar(db, "SELECT count(*) FROM router.agent_slots WHERE load > capacity") == 0
