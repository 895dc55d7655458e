"""The credential says who acts: an agent's own key needs no agent_id (and may not name
another agent), and a desk key acts for the agent it names, which the events record."""

import json

import pytest

from services.router.app import create_app
from services.router.settings import RouterSettings
from shared.auth import DESK, Principal, agent_scope
from shared.problems import Forbidden, Unprocessable
from shared.settings import CommonSettings
from shared.sso import principal_of
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import assignments, inbound, put_agent, send


@pytest.fixture
def router_app(common):
    return create_app(RouterSettings(**common, queue_sweep_interval_s=0.2))


async def _held(client, ids, agent):
    async def probe():
        return (await assignments(client, ids, agent, wait=1))["conversations"]

    (conv,) = await eventually(probe, what=f"a conversation for {agent}")
    return conv["id"]


async def _events(broker, topic, kind, count=1):
    async def probe():
        found = [json.loads(r.value) for r in await read_topic(broker.bootstrap, topic)]
        found = [e for e in found if e["type"] == kind]
        return found if len(found) >= count else None

    return await eventually(probe, what=f"{count} {kind} event(s)")


async def test_an_agent_replies_and_resolves_without_naming_itself(router_app, ids, broker, topics):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        await put_agent(client, ids, agent)
        await send(broker, topics, inbound("self", "hello, I need help"))
        conv = await _held(client, ids, agent)
        me = ids.as_agent(agent)
        reply = await client.post(
            f"/v1/conversations/{conv}/replies", headers=me, json={"text": "on it"}
        )
        assert reply.status_code == 201, reply.text
        resolved = await client.post(f"/v1/conversations/{conv}/resolve", headers=me)
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["state"] == "resolved"
        (replied,) = await _events(broker, topics.conversation_events, "conversation.agent_replied")
        assert replied["agent_id"] == agent and replied["acted_by"] is None


async def test_an_agent_naming_another_agent_is_refused_with_a_problem(
    router_app, ids, broker, topics
):
    agent, other = ids.agent_ids[:2]
    async with running(router_app) as client:
        await put_agent(client, ids, agent)
        await put_agent(client, ids, other, online=False)
        await send(broker, topics, inbound("named", "hello, I need help"))
        conv = await _held(client, ids, agent)
        for action, body in [("replies", {"text": "x"}), ("resolve", {}), ("accept", {})]:
            answer = await client.post(
                f"/v1/conversations/{conv}/{action}",
                headers=ids.as_agent(agent),
                json={"agent_id": other, **body},
            )
            assert answer.status_code == 403, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert f"agent_id {other!r} is not this credential's agent" in answer.json()["detail"]
        # Naming itself is as good as not naming anyone.
        answer = await client.post(
            f"/v1/conversations/{conv}/resolve",
            headers=ids.as_agent(agent),
            json={"agent_id": agent},
        )
        assert answer.status_code == 200, answer.text


async def test_a_desk_acts_for_the_agent_it_names_and_the_events_say_so(
    router_app, ids, broker, topics
):
    agent, other = ids.agent_ids[:2]
    desk = ids.as_desk
    async with running(router_app) as client:
        await put_agent(client, ids, agent, online=False)
        await put_agent(client, ids, other, online=False)
        online = await client.put(
            f"/v1/agents/{agent}/status", headers=desk, json={"status": "online"}
        )
        assert online.status_code == 200, online.text
        await send(broker, topics, inbound("desk", "hello, I need help"))

        async def held():
            answer = await client.get(
                f"/v1/agents/{agent}/assignments", params={"wait": 1}, headers=desk
            )
            assert answer.status_code == 200, answer.text
            return answer.json()["conversations"]

        (conv,) = await eventually(held, what="the desk sees the agent's conversation")
        seen = await client.get(f"/v1/conversations/{conv['id']}", headers=desk)
        assert seen.status_code == 200, seen.text

        nameless = await client.post(
            f"/v1/conversations/{conv['id']}/replies", headers=desk, json={"text": "x"}
        )
        assert nameless.status_code == 422, nameless.text
        assert nameless.headers["content-type"] == "application/problem+json"
        assert "agent_id" in nameless.json()["detail"]
        # Named for the wrong agent: that agent holds no such conversation.
        wrong = await client.post(
            f"/v1/conversations/{conv['id']}/replies",
            headers=desk,
            json={"agent_id": other, "text": "x"},
        )
        assert wrong.status_code == 404, wrong.text

        for action, body in [("replies", {"text": "on it"}), ("resolve", {})]:
            answer = await client.post(
                f"/v1/conversations/{conv['id']}/{action}",
                headers=desk,
                json={"agent_id": agent, **body},
            )
            assert answer.status_code in (200, 201), answer.text

        (replied,) = await _events(broker, topics.conversation_events, "conversation.agent_replied")
        (resolved,) = await _events(broker, topics.conversation_events, "conversation.resolved")
        assert (replied["agent_id"], replied["acted_by"]) == (agent, "desk")
        assert (resolved["agent_id"], resolved["acted_by"]) == (agent, "desk")
        (status,) = await _events(broker, topics.agent_events, "agent.status_changed")
        assert (status["agent_id"], status["status"], status["acted_by"]) == (
            agent,
            "online",
            "desk",
        )


async def test_ops_may_not_act_in_an_agents_name(router_app, ids, broker, topics):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        await put_agent(client, ids, agent)
        await send(broker, topics, inbound("ops", "hello, I need help"))
        conv = await _held(client, ids, agent)
        answer = await client.post(
            f"/v1/conversations/{conv}/resolve", headers=ids.as_ops, json={"agent_id": agent}
        )
        assert answer.status_code == 403, answer.text


async def test_a_desk_key_is_issued_at_run_time(router_app, ids):
    async with running(router_app) as client:
        created = await client.post(
            "/v1/keys", headers=ids.as_ops, json={"name": "frontend-bff", "scopes": [DESK]}
        )
        assert created.status_code == 201, created.text
        assert created.json()["scopes"] == [DESK]
        unknown = await client.post(
            "/v1/keys", headers=ids.as_ops, json={"name": "x", "scopes": ["desks"]}
        )
        assert unknown.status_code == 422
        assert "desk" in unknown.text


def test_who_acts_follows_from_the_credential():
    own = Principal("alice", frozenset({agent_scope("alice")}))
    assert own.actor(None) == ("alice", None)
    assert own.actor("alice") == ("alice", None)
    with pytest.raises(Forbidden):
        own.actor("bob")
    desk = Principal("bff", frozenset({DESK}))
    assert desk.actor("bob") == ("bob", "bff")
    with pytest.raises(Unprocessable):
        desk.actor(None)
    both = Principal("bff", frozenset({DESK, agent_scope("alice")}))
    assert both.actor(None) == ("alice", None)
    assert both.actor("bob") == ("bob", "bff")
    two = Principal("pair", frozenset({agent_scope("a"), agent_scope("b")}))
    with pytest.raises(Unprocessable):
        two.actor(None)
    assert two.actor("b") == ("b", None)
    with pytest.raises(Forbidden):
        Principal("ops", frozenset({"ops"})).actor("alice")


def test_a_single_sign_on_role_grants_desk():
    settings = CommonSettings(oidc_desk_role="bff")
    who = principal_of({"sub": "svc-frontend", "roles": ["bff"]}, settings)
    assert who.has(DESK)
    assert not principal_of({"sub": "alice", "roles": []}, settings).has(DESK)
