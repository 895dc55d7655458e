"""The router's invariants, read from its database and its event stream after a run: every
inbound message once and in order, load counters equal to what agents hold, no conversation
given to a second agent. Shared by the stress and fault tests."""

import json
from collections import defaultdict

from sqlalchemy import text

from tests.conftest import eventually, read_topic


async def rows(engine, sql):
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).all()


async def outbox_drained(engine, timeout=60):
    async def empty():
        return (await rows(engine, "SELECT count(*) FROM router.outbox"))[0][0] == 0

    await eventually(empty, timeout=timeout, what="the outbox drained")


async def inbound_messages(engine):
    """(message id, conversation key, the number the test wrote first in its text), in the
    order the router stored them."""
    found = await rows(
        engine,
        """SELECT m.id, c.conversation_key, m.text FROM router.messages m
           JOIN router.conversations c ON c.id = m.conversation_id
           WHERE m.direction = 'inbound' ORDER BY m.seq""",
    )
    return [(str(mid), key, int(body.split()[0][1:])) for mid, key, body in found]


def out_of_order(messages):
    """Conversations whose messages were stored in another order than they were written."""
    numbers = defaultdict(list)
    for _, key, number in messages:
        numbers[key].append(number)
    return [key for key, seq in numbers.items() if seq != sorted(seq)]


async def load_mismatches(engine):
    """Agent slots whose load differs from the conversations the agent holds there."""
    return await rows(
        engine,
        """SELECT s.agent_id, s.channel, s.load, count(c.id) FROM router.agent_slots s
           LEFT JOIN router.conversations c ON c.agent_id = s.agent_id
                AND c.channel = s.channel AND c.state = 'assigned'
           GROUP BY s.agent_id, s.channel, s.load HAVING s.load <> count(c.id)""",
    )


async def given_to_two_agents(broker, topics):
    """Conversations the event stream gives to a second agent without taking them back."""
    holder: dict[str, str | None] = {}
    doubled = []
    for record in await read_topic(broker.bootstrap, topics.conversation_events):
        event = json.loads(record.value)
        cid = event["conversation_id"]
        if event["type"] in ("conversation.assigned", "conversation.offered"):
            if holder.get(cid) not in (None, event["agent_id"]):
                doubled.append(cid)
            holder[cid] = event["agent_id"]
        elif event["type"] in (
            "conversation.queued",
            "conversation.resolved",
            "conversation.transferred",
            "conversation.reopened",
        ):
            holder[cid] = None
    return doubled
