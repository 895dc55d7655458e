"""Answers of the agent API are bounded: the latest messages with a cursor, lists in pages."""

import pytest
from sqlalchemy import text

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, running
from tests.integration.routerkit import (
    assignments,
    inbound,
    put_agent,
    scalar,
    send,
)

HISTORY = 10_000


@pytest.fixture
def router_app(common):
    return create_app(RouterSettings(**common, conversation_messages=50))


async def long_conversation(client, ids, broker, topics, db, agent):
    """A conversation of the agent holding ``HISTORY`` messages after its first, 'hello'."""
    await put_agent(client, ids, agent)
    await send(broker, topics, inbound("long", "hello"))
    got = await assignments(client, ids, agent, wait=10)
    conv_id = got["conversations"][0]["id"]
    async with db.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO router.messages (id, conversation_id, direction, author, text,
                                                created_at)
                   SELECT gen_random_uuid(), :cid, 'inbound', 'cust-long', 'm' || g, now()
                   FROM generate_series(1, :n) g ORDER BY g"""
            ),
            {"cid": conv_id, "n": HISTORY},
        )
    return conv_id, got["cursor"]


async def test_a_long_conversation_answers_its_latest_messages_and_pages_back_to_the_first(
    router_app, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        conv_id, _ = await long_conversation(client, ids, broker, topics, db, agent)
        as_agent = ids.as_agent(agent)

        view = (await client.get(f"/v1/conversations/{conv_id}", headers=as_agent)).json()
        assert [m["text"] for m in view["messages"]] == [f"m{i}" for i in range(9951, 10001)]
        assert view["earlier_messages"]

        texts = [m["text"] for m in view["messages"]]
        before = view["earlier_messages"]
        while before:
            page = await client.get(
                f"/v1/conversations/{conv_id}/messages",
                params={"before": before, "limit": 500},
                headers=as_agent,
            )
            assert page.status_code == 200, page.text
            assert len(page.json()["messages"]) <= 500
            texts = [m["text"] for m in page.json()["messages"]] + texts
            before = page.json()["earlier_messages"]
        assert texts == ["hello"] + [f"m{i}" for i in range(1, HISTORY + 1)]

        few = await client.get(
            f"/v1/conversations/{conv_id}", params={"messages": 3}, headers=as_agent
        )
        assert [m["text"] for m in few.json()["messages"]] == ["m9998", "m9999", "m10000"]
        too_many = await client.get(
            f"/v1/conversations/{conv_id}", params={"messages": 501}, headers=as_agent
        )
        forged = await client.get(
            f"/v1/conversations/{conv_id}/messages",
            params={"before": "bm90IG1pbmU"},
            headers=as_agent,
        )
        assert too_many.status_code == 422 and forged.status_code == 400
        assert forged.headers["content-type"] == "application/problem+json"
        other = ids.agent_ids[1]
        await put_agent(client, ids, other)
        peek = await client.get(
            f"/v1/conversations/{conv_id}/messages", headers=ids.as_agent(other)
        )
        anonymous = await client.get(f"/v1/conversations/{conv_id}/messages")
        as_ingest = await client.get(f"/v1/conversations/{conv_id}/messages", headers=ids.as_ingest)
        assert peek.status_code == as_ingest.status_code == 404
        assert anonymous.status_code == 401


async def test_assignments_and_action_answers_carry_the_latest_messages_only(
    router_app, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        conv_id, _ = await long_conversation(client, ids, broker, topics, db, agent)
        await send(broker, topics, inbound("long", "still there?"))

        async def followed_up():
            got = await assignments(client, ids, agent)
            texts = [m["text"] for m in got["conversations"][0]["messages"]]
            return got if texts[-1] == "still there?" else None

        got = await eventually(followed_up, what="the follow-up in the assignments")
        (conv,) = got["conversations"]
        assert len(conv["messages"]) == 50 and conv["earlier_messages"]
        assert conv["messages"][0]["text"] == "m9952"
        short = await assignments(client, ids, agent, messages=2)
        assert [m["text"] for m in short["conversations"][0]["messages"]] == [
            "m10000",
            "still there?",
        ]
        resolved = await client.post(
            f"/v1/conversations/{conv_id}/resolve",
            headers=ids.as_agent(agent),
            json={"agent_id": agent},
        )
        assert resolved.status_code == 200 and len(resolved.json()["messages"]) == 50


async def test_agents_and_queues_come_in_pages_linked_by_next(router_app, ids, broker, topics, db):
    agents = sorted(f"{ids.agent_ids[0]}-{i}" for i in range(7))
    async with running(router_app) as client:
        for agent in agents:
            await put_agent(client, ids, agent, online=False)
        await send(
            broker,
            topics,
            inbound("q1", "my account was hacked"),
            inbound("q2", "my deposit is not credited"),
            inbound("q3", "a suggestion for you"),
        )

        async def queued():
            return (
                await scalar(db, "SELECT count(*) FROM router.conversations WHERE state = 'queued'")
                == 3
            )

        await eventually(queued, what="three conversations queued")

        async def every_page(path, limit):
            items, sizes, url = [], [], f"{path}?limit={limit}"
            while url:
                answer = await client.get(url, headers=ids.as_ops)
                assert answer.status_code == 200, answer.text
                items += answer.json()
                sizes.append(len(answer.json()))
                url = answer.links.get("next", {}).get("url")
            return items, sizes

        paged, sizes = await every_page("/v1/agents", 3)
        assert [a["id"] for a in paged] == agents and sizes == [3, 3, 1]
        whole = (await client.get("/v1/agents", headers=ids.as_ops)).json()
        assert whole == paged

        queues, sizes = await every_page("/v1/queues", 2)
        assert sizes == [2, 1]
        assert [q["skill"] for q in queues] == ["funds", "general", "security"]
        whole = (await client.get("/v1/queues", headers=ids.as_ops)).json()
        assert [(q["skill"], q["depth"]) for q in whole] == [(q["skill"], 1) for q in queues]
        refused = await client.get("/v1/agents?limit=1001", headers=ids.as_ops)
        assert refused.status_code == 422
