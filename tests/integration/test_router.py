"""The router through its real consumer, API, broker and database."""

import asyncio
import json

import pytest

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, produce, read_topic, running
from tests.integration.routerkit import (
    assignments,
    inbound,
    put_agent,
    scalar,
    send,
)


@pytest.fixture
def router_app(common):
    return create_app(RouterSettings(**common, queue_sweep_interval_s=0.2))


async def test_a_message_goes_to_the_least_loaded_eligible_agent(
    router_app, ids, broker, topics, db
):
    a, b, c = ids.agent_ids[:3]
    async with running(router_app) as client:
        await put_agent(client, ids, a)
        await put_agent(client, ids, b)
        await put_agent(client, ids, c, languages=["ko"])  # does not speak English
        await send(broker, topics, inbound("r1", "hello, I need help"))
        first = (await assignments(client, ids, a, wait=10))["conversations"] or (
            await assignments(client, ids, b, wait=10)
        )["conversations"]
        assert len(first) == 1
        holder = first[0]["agent_id"]
        other = b if holder == a else a
        await send(broker, topics, inbound("r2", "another question"))
        got = await assignments(client, ids, other, wait=10)
        assert [c["conversation_key"] for c in got["conversations"]] == ["chat:r2"]
        assert (await assignments(client, ids, c))["conversations"] == []


async def test_the_long_poll_wakes_when_an_assignment_arrives(router_app, ids, broker, topics):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        await put_agent(client, ids, agent)
        empty = await assignments(client, ids, agent)
        assert empty["conversations"] == []
        poll = asyncio.create_task(assignments(client, ids, agent, wait=20, since=empty["cursor"]))
        await asyncio.sleep(0.3)
        assert not poll.done()
        await send(broker, topics, inbound("wake", "my withdrawal is pending"))
        got = await asyncio.wait_for(poll, 15)
        conv = got["conversations"][0]
        assert conv["classification"]["priority"] == "high"
        assert conv["classification"]["skill"] == "funds"
        assert conv["messages"][0]["text"] == "my withdrawal is pending"
        assert got["cursor"] > empty["cursor"]
        quiet = await assignments(client, ids, agent, wait=0.5, since=got["cursor"])
        assert quiet["conversations"] == [] and quiet["cursor"] == got["cursor"]


async def test_with_nobody_eligible_it_queues_and_going_online_pulls_the_most_urgent_first(
    router_app, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        await put_agent(client, ids, agent, capacity={"chat": 1}, online=False)
        await send(broker, topics, inbound("low", "a suggestion for you"))
        await send(broker, topics, inbound("urgent", "my account was hacked"))

        async def both_queued():
            return (
                await scalar(db, "SELECT count(*) FROM router.conversations WHERE state = 'queued'")
                == 2
            )

        await eventually(both_queued, what="two queued conversations")
        await client.put(
            f"/v1/agents/{agent}/status", headers=ids.as_agent(agent), json={"status": "online"}
        )
        got = await assignments(client, ids, agent, wait=5)
        assert [c["conversation_key"] for c in got["conversations"]] == ["chat:urgent"]

        conv_id = got["conversations"][0]["id"]
        resolved = await client.post(
            f"/v1/conversations/{conv_id}/resolve",
            headers=ids.as_agent(agent),
            json={"agent_id": agent},
        )
        assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
        got = await assignments(client, ids, agent, wait=5)
        assert [c["conversation_key"] for c in got["conversations"]] == ["chat:low"]


async def test_followups_stay_with_the_agent_and_reply_and_resolve_publish_events(
    router_app, ids, broker, topics, db
):
    a, b = ids.agent_ids[:2]
    async with running(router_app) as client:
        await put_agent(client, ids, a)
        await send(broker, topics, inbound("f", "hello"))
        got = await assignments(client, ids, a, wait=10)
        conv_id = got["conversations"][0]["id"]
        await put_agent(client, ids, b)  # idle now, but follow-ups stay with a
        await send(broker, topics, inbound("f", "are you there?"))
        got = await assignments(client, ids, a, wait=10, since=got["cursor"])
        assert [m["text"] for m in got["conversations"][0]["messages"]] == [
            "hello",
            "are you there?",
        ]
        reply = await client.post(
            f"/v1/conversations/{conv_id}/replies",
            headers=ids.as_agent(a),
            json={"agent_id": a, "text": "Hi!"},
        )
        assert reply.status_code == 201
        await client.post(
            f"/v1/conversations/{conv_id}/resolve", headers=ids.as_agent(a), json={"agent_id": a}
        )
        view = (await client.get(f"/v1/conversations/{conv_id}", headers=ids.as_ops)).json()
        assert view["state"] == "resolved" and view["agent_id"] == a
        assert [m["direction"] for m in view["messages"]] == ["inbound", "inbound", "outbound"]
        assert view["classification"]["rules_fired"] == ["default", "language.latin-default"]

        async def published():
            events = await read_topic(broker.bootstrap, topics.conversation_events)
            kinds = [json.loads(r.value)["type"] for r in events]
            return kinds if "conversation.resolved" in kinds else None

        kinds = await eventually(published, what="resolved event")
        assert kinds == [
            "conversation.opened",
            "conversation.message_received",
            "conversation.classified",
            "conversation.assigned",
            "conversation.message_received",
            "conversation.agent_replied",
            "conversation.resolved",
        ]
        outbound = await read_topic(broker.bootstrap, topics.outbound)
        assert [json.loads(r.value)["text"] for r in outbound] == ["Hi!"]


async def test_a_redelivered_message_changes_nothing(router_app, ids, broker, topics, db):
    agent = ids.agent_ids[0]
    first = inbound("dup", "my deposit is not credited", provider_id="tg-1")
    second = inbound("dup", "still waiting", provider_id="tg-2")
    async with running(router_app) as client:
        await put_agent(client, ids, agent)
        await send(broker, topics, first, second)

        async def applied():
            return await scalar(db, "SELECT count(*) FROM router.messages") == 2

        await eventually(applied, what="both messages applied")
        await eventually(lambda: _outbox_empty(db), what="outbox drained")
        before = await read_topic(broker.bootstrap, topics.conversation_events)

        await send(broker, topics, first, second, first)  # the same records, replayed

        async def consumed():
            return router_app.state.consume_loop.applied >= 5

        await eventually(consumed, what="replayed records consumed")
        assert await scalar(db, "SELECT count(*) FROM router.messages") == 2
        assert await scalar(db, "SELECT count(*) FROM router.conversations") == 1
        assert await scalar(db, "SELECT sum(load) FROM router.agent_slots") == 1
        await asyncio.sleep(0.5)
        after = await read_topic(broker.bootstrap, topics.conversation_events)
        assert len(after) == len(before)


async def _outbox_empty(db):
    return await scalar(db, "SELECT count(*) FROM router.outbox") == 0


async def test_a_malformed_record_is_dead_lettered_and_the_consumer_goes_on(
    router_app, ids, broker, topics, db
):
    good = inbound("after-poison", "hello")
    async with running(router_app):
        await produce(
            broker.bootstrap,
            topics.inbound,
            [
                ("chat:poison", b"{not json"),
                ("chat:poison", json.dumps({"type": "message.inbound", "text": "no ids"}).encode()),
            ],
        )
        await send(broker, topics, good)

        async def applied():
            return (
                await scalar(
                    db, "SELECT count(*) FROM router.messages WHERE id = :id", id=good.message_id
                )
                == 1
            )

        await eventually(applied, what="the good message applied after the poison ones")
        letters = [
            json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.dead_letter)
        ]
    assert len(letters) == 2
    assert {letter["source_topic"] for letter in letters} == {topics.inbound}
    assert all(letter["reason"].startswith("invalid InboundMessage") for letter in letters)
    assert "{not json" in {letter["value"] for letter in letters}


async def test_agents_see_and_act_on_their_own_conversations_only(router_app, ids, broker, topics):
    a, b = ids.agent_ids[:2]
    async with running(router_app) as client:
        await put_agent(client, ids, a)
        await send(broker, topics, inbound("mine", "hello"))
        conv_id = (await assignments(client, ids, a, wait=10))["conversations"][0]["id"]
        await put_agent(client, ids, b)
        as_b = ids.as_agent(b)
        peek = await client.get(f"/v1/conversations/{conv_id}", headers=as_b)
        others = await client.get(f"/v1/agents/{a}/assignments", headers=as_b)
        reply_as_a = await client.post(
            f"/v1/conversations/{conv_id}/replies", headers=as_b, json={"agent_id": a, "text": "x"}
        )
        reply_as_b = await client.post(
            f"/v1/conversations/{conv_id}/replies", headers=as_b, json={"agent_id": b, "text": "x"}
        )
        admin = await client.put(
            f"/v1/agents/{b}",
            headers=as_b,
            json={
                "name": "b",
                "skills": {"general": 5},
                "languages": ["en"],
                "capacity": {"chat": 99},
            },
        )
        anonymous = await client.get(f"/v1/conversations/{conv_id}")
        own = await client.get(f"/v1/conversations/{conv_id}", headers=ids.as_agent(a))
    assert peek.status_code == 404 and reply_as_b.status_code == 404
    assert others.status_code == 403 and reply_as_a.status_code == 403 and admin.status_code == 403
    assert anonymous.status_code == 401
    assert own.status_code == 200
    for answer in (peek, others, reply_as_a, reply_as_b, admin, anonymous):
        assert answer.headers["content-type"] == "application/problem+json"
        assert "hello" not in answer.text


async def test_bad_agent_input_is_refused_with_a_problem(router_app, ids):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        bad_skill = await client.put(
            f"/v1/agents/{agent}",
            headers=ids.as_ops,
            json={
                "name": "x",
                "skills": {"cooking": 3},
                "languages": ["en"],
                "capacity": {"chat": 1},
            },
        )
        bad_level = await client.put(
            f"/v1/agents/{agent}",
            headers=ids.as_ops,
            json={
                "name": "x",
                "skills": {"funds": 9},
                "languages": ["en"],
                "capacity": {"chat": 1},
            },
        )
        unknown = await client.put(
            "/v1/agents/nobody/status", headers=ids.as_ops, json={"status": "online"}
        )
        bad_status = await client.put(
            f"/v1/agents/{agent}/status", headers=ids.as_ops, json={"status": "asleep"}
        )
    assert bad_skill.status_code == bad_level.status_code == bad_status.status_code == 422
    assert unknown.status_code == 404
    assert "skills" in bad_skill.json()["detail"]


async def test_with_a_pool_of_one_connection_requests_and_records_wait_their_turn(
    common, ids, broker, topics, db
):
    """The router opens no connection beyond its pool: concurrent work queues for it."""
    app = create_app(RouterSettings(**common | {"db_pool_size": 1}))
    agents = ids.agent_ids[:3]
    async with running(app) as client:
        for agent in agents:
            await put_agent(client, ids, agent)
        await send(broker, topics, *(inbound(f"pool-{i}", "deposit missing") for i in range(12)))
        answers = await asyncio.gather(
            *(client.get("/v1/agents", headers=ids.as_ops) for _ in range(20)),
            *(client.get(f"/v1/agents/{a}/assignments", headers=ids.as_agent(a)) for a in agents),
        )
        assert {a.status_code for a in answers} == {200}

        async def applied():
            return await scalar(db, "SELECT count(*) FROM router.messages") == 12

        await eventually(applied, what="every record applied through one connection")
        assert app.state.engine.pool.size() == 1
        assert app.state.engine.pool.overflow() <= 0
