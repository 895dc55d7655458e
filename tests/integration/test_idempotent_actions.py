"""Agent actions with an Idempotency-Key: a retry gets the first answer and does nothing."""

import asyncio
import json

import pytest

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import assignments, inbound, put_agent, scalar, send


@pytest.fixture
def router_app(common):
    return create_app(RouterSettings(**common))


async def assigned(client, ids, broker, topics, agent, ref):
    await send(broker, topics, inbound(ref, "my deposit is not credited"))

    async def found():
        convs = (await assignments(client, ids, agent, wait=5))["conversations"]
        return [c["id"] for c in convs if c["conversation_key"] == f"chat:{ref}"]

    return (await eventually(found, what=f"conversation {ref} assigned"))[0]


def post(client, ids, agent, conv_id, action, key, **body):
    return client.post(
        f"/v1/conversations/{conv_id}/{action}",
        headers={**ids.as_agent(agent), "Idempotency-Key": key},
        json={"agent_id": agent, **body},
    )


async def test_a_retried_reply_with_the_same_key_is_one_message_with_the_same_id(
    router_app, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        await put_agent(client, ids, agent)
        conv_id = await assigned(client, ids, broker, topics, agent, "retry")

        first = await post(client, ids, agent, conv_id, "replies", "reply-1", text="On it!")
        retry = await post(client, ids, agent, conv_id, "replies", "reply-1", text="On it!")
        racing = await asyncio.gather(
            *(
                post(client, ids, agent, conv_id, "replies", "reply-2", text="Done.")
                for _ in range(5)
            )
        )
        reused = await post(client, ids, agent, conv_id, "replies", "reply-1", text="Other")

        assert first.status_code == retry.status_code == 201
        assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
        assert {r.status_code for r in racing} == {201}
        assert len({r.json()["message_id"] for r in racing}) == 1
        assert reused.status_code == 409
        assert reused.headers["content-type"] == "application/problem+json"
        sent = await scalar(
            db,
            "SELECT count(*) FROM router.messages WHERE direction = 'outbound' "
            "AND conversation_id = :c",
            c=conv_id,
        )
        assert sent == 2
        await eventually(lambda: _outbox_empty(db), what="every event the replies wrote published")
        outbound = await read_topic(broker.bootstrap, topics.outbound)
        assert sorted(json.loads(r.value)["text"] for r in outbound) == ["Done.", "On it!"]
        assert {json.loads(r.value)["message_id"] for r in outbound} == {
            first.json()["message_id"],
            racing[0].json()["message_id"],
        }


async def _outbox_empty(db):
    return await scalar(db, "SELECT count(*) FROM router.outbox") == 0


async def test_resolve_and_transfer_retried_with_their_keys_answer_as_the_first_time(
    router_app, ids, broker, topics, db
):
    a, b = ids.agent_ids[:2]
    async with running(router_app) as client:
        await put_agent(client, ids, a)
        moving = await assigned(client, ids, broker, topics, a, "moving")
        closing = await assigned(client, ids, broker, topics, a, "closing")
        await put_agent(client, ids, b)

        moved = await post(client, ids, a, moving, "transfer", "t-1", to_agent_id=b, reason="VIP")
        moved_again = await post(
            client, ids, a, moving, "transfer", "t-1", to_agent_id=b, reason="VIP"
        )
        resolved = await post(client, ids, a, closing, "resolve", "r-1")
        resolved_again = await post(client, ids, a, closing, "resolve", "r-1")
        without_key = await client.post(
            f"/v1/conversations/{closing}/resolve", headers=ids.as_agent(a), json={"agent_id": a}
        )

        assert moved.status_code == moved_again.status_code == 200
        assert moved_again.json() == moved.json() and moved.json()["agent_id"] == b
        assert resolved.status_code == resolved_again.status_code == 200
        assert resolved_again.json() == resolved.json()
        assert resolved.json()["state"] == "resolved"
        assert without_key.status_code == 409  # the key is what makes the retry safe
        await eventually(lambda: _outbox_empty(db), what="every event the actions wrote published")
        published = [
            json.loads(r.value)["type"]
            for r in await read_topic(broker.bootstrap, topics.conversation_events)
        ]
        assert published.count("conversation.transferred") == 1
        assert published.count("conversation.resolved") == 1


async def test_the_same_key_of_two_agents_is_two_keys(router_app, ids, broker, topics):
    a, b = ids.agent_ids[:2]
    async with running(router_app) as client:
        await put_agent(client, ids, a, capacity={"chat": 1})
        of_a = await assigned(client, ids, broker, topics, a, "of-a")
        await put_agent(client, ids, b, capacity={"chat": 1})
        of_b = await assigned(client, ids, broker, topics, b, "of-b")

        by_a = await post(client, ids, a, of_a, "replies", "same", text="hi")
        by_b = await post(client, ids, b, of_b, "replies", "same", text="hi")

        assert by_a.status_code == by_b.status_code == 201
        assert by_a.json() != by_b.json() and "idempotent-replayed" not in by_b.headers
