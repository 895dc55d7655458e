"""Offers through the real router: a conversation given to an agent who must accept it shows
``offered`` in every answer until the agent accepts (or replies, or resolves), then
``assigned``; an offer not accepted in time goes back to the queue and on to the next agent,
and the events say each step."""

import json

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import act, assignments, inbound, put_agent, send


def offering_router(common, timeout_s):
    return create_app(
        RouterSettings(**common, queue_sweep_interval_s=0.2, offer_timeout_s={"chat": timeout_s})
    )


async def _held(client, ids, agent, count):
    async def probe():
        found = (await assignments(client, ids, agent, wait=1))["conversations"]
        return found if len(found) == count else None

    return await eventually(probe, what=f"{count} conversation(s) for {agent}")


async def _conversation(client, ids, conv_id):
    answer = await client.get(f"/v1/conversations/{conv_id}", headers=ids.as_ops)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _events_of(broker, topics, conv_id, last_kind):
    """The conversation's events, in order, once ``last_kind`` is among them (the relay
    publishes after the commit, so events may trail the answers)."""

    async def probe():
        records = await read_topic(broker.bootstrap, topics.conversation_events)
        found = [json.loads(r.value) for r in records]
        found = [e for e in found if e["conversation_id"] == conv_id]
        return found if any(e["type"] == last_kind for e in found) else None

    return await eventually(probe, what=f"{last_kind} of {conv_id}")


def _routing(events):
    """The routing steps of a conversation's events: (type, agent) without the messages."""
    kinds = {"offered", "assigned", "offer_timed_out", "queued", "resolved", "transferred"}
    return [
        (e["type"].removeprefix("conversation."), e.get("agent_id"))
        for e in events
        if e["type"].removeprefix("conversation.") in kinds
    ]


async def test_a_pending_offer_shows_offered_everywhere_until_accepted_or_answered(
    common, ids, broker, topics
):
    a = ids.agent_ids[0]
    async with running(offering_router(common, 60)) as client:
        await put_agent(client, ids, a, capacity={"chat": 2})
        await send(broker, topics, inbound("of1", "hello"), inbound("of2", "hi there"))
        held = await _held(client, ids, a, 2)
        assert {(c["state"], c["agent_id"], c["accepted_at"]) for c in held} == {
            ("offered", a, None)
        }
        by_key = {c["conversation_key"]: c["id"] for c in held}
        first, second = by_key["chat:of1"], by_key["chat:of2"]
        assert (await _conversation(client, ids, first))["state"] == "offered"
        found = await client.get(
            "/v1/conversations", params={"key": "chat:of1"}, headers=ids.as_ops
        )
        assert found.json()["state"] == "offered"
        # An offer holds its slot: the agent's load counts it.
        agents = (await client.get("/v1/agents", headers=ids.as_ops)).json()
        assert next(x for x in agents if x["id"] == a)["load"]["chat"] == 2

        accepted = await act(client, ids, a, first, "accept")
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["state"] == "assigned"
        assert accepted.json()["accepted_at"] is not None
        replied = await act(client, ids, a, second, "replies", text="hello, looking into it")
        assert replied.status_code == 201, replied.text
        assert (await _conversation(client, ids, second))["state"] == "assigned"
        held = await _held(client, ids, a, 2)
        assert {c["state"] for c in held} == {"assigned"}
        again = await act(client, ids, a, first, "accept")  # accepting twice changes nothing
        assert again.status_code == 200 and again.json()["state"] == "assigned"

        events = await _events_of(broker, topics, first, "conversation.assigned")
        assert _routing(events) == [("offered", a), ("assigned", a)]
        offered, assigned = (
            e for e in events if e["type"] in {"conversation.offered", "conversation.assigned"}
        )
        # The acceptance names the offer it accepts.
        assert assigned["offered_at"] == offered["occurred_at"]
        events = await _events_of(broker, topics, second, "conversation.agent_replied")
        assert _routing(events) == [("offered", a), ("assigned", a)]
        kinds = [e["type"] for e in events]
        assert kinds.index("conversation.assigned") < kinds.index("conversation.agent_replied")


async def test_resolving_an_offer_accepts_it_first(common, ids, broker, topics):
    a = ids.agent_ids[0]
    async with running(offering_router(common, 60)) as client:
        await put_agent(client, ids, a)
        await send(broker, topics, inbound("of-spam", "buy followers cheap"))
        (conv,) = await _held(client, ids, a, 1)
        assert conv["state"] == "offered"
        resolved = await act(client, ids, a, conv["id"], "resolve")
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["state"] == "resolved"
        events = await _events_of(broker, topics, conv["id"], "conversation.resolved")
        assert _routing(events) == [("offered", a), ("assigned", a), ("resolved", a)]


async def test_an_offer_not_accepted_in_time_goes_back_to_the_queue_then_to_the_next_agent(
    common, ids, broker, topics
):
    a, b = ids.agent_ids[:2]
    async with running(offering_router(common, 0.5)) as client:
        await put_agent(client, ids, a)
        await send(broker, topics, inbound("of-late", "hello?"))
        (conv,) = await _held(client, ids, a, 1)
        assert conv["state"] == "offered"

        async def state_is(wanted):
            found = await _conversation(client, ids, conv["id"])
            return found if (found["state"], found["agent_id"]) == wanted else None

        # a let it time out and may not have it again; nobody else is online: it waits.
        await eventually(lambda: state_is(("queued", None)), what="back in the queue")
        queues = (await client.get("/v1/queues", headers=ids.as_ops)).json()
        assert sum(q["depth"] for q in queues) == 1

        await put_agent(client, ids, b)
        found = await eventually(lambda: state_is(("offered", b)), what="offered to b")
        assert found["accepted_at"] is None
        accepted = await act(client, ids, b, conv["id"], "accept")
        assert accepted.status_code == 200 and accepted.json()["state"] == "assigned"

        events = await _events_of(broker, topics, conv["id"], "conversation.assigned")
        assert _routing(events) == [
            ("offered", a),
            ("offer_timed_out", a),
            ("queued", None),
            ("offered", b),
            ("assigned", b),
        ]
        requeued = next(e for e in events if e["type"] == "conversation.queued")
        assert requeued["reason"] == "offer_timed_out"
