"""Helpers for driving the router through its broker, API and database."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from shared.events import Channel, Customer, InboundMessage
from shared.ids import conversation_key_for, message_id_for
from tests.conftest import produce


def inbound(
    ref: str,
    text_: str,
    *,
    channel=Channel.CHAT,
    language=None,
    tier="standard",
    provider_id=None,
    category=None,
) -> InboundMessage:
    mid = message_id_for(channel, provider_id or uuid.uuid4().hex)
    return InboundMessage(
        event_id=mid,
        occurred_at=datetime.now(UTC),
        message_id=mid,
        channel=channel,
        channel_message_id=provider_id or mid.hex,
        conversation_key=conversation_key_for(channel, ref),
        customer=Customer(id=f"cust-{ref}", tier=tier, language=language),
        text=text_,
        category=category,
    )


async def send(broker, topics, *messages: InboundMessage) -> None:
    await produce(
        broker.bootstrap,
        topics.inbound,
        [(m.conversation_key, m.model_dump_json().encode()) for m in messages],
    )


async def scalar(db, sql, **params):
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def put_agent(
    client,
    ids,
    agent_id,
    *,
    skills=None,
    languages=("en",),
    capacity=None,
    online=True,
    **extra,
):
    answer = await client.put(
        f"/v1/agents/{agent_id}",
        headers=ids.as_ops,
        json={
            "name": agent_id,
            "skills": skills or {"general": 2, "funds": 2, "security": 2},
            "languages": list(languages),
            "capacity": capacity or {"chat": 2, "email": 5},
            **extra,
        },
    )
    assert answer.status_code == 200, answer.text
    if online:
        answer = await client.put(
            f"/v1/agents/{agent_id}/status",
            headers=ids.as_agent(agent_id),
            json={"status": "online"},
        )
        assert answer.status_code == 200, answer.text
    return answer.json()


async def assignments(client, ids, agent_id, **params):
    answer = await client.get(
        f"/v1/agents/{agent_id}/assignments", params=params, headers=ids.as_agent(agent_id)
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def conversation_of(db, key):
    return await scalar(
        db, "SELECT id FROM router.conversations WHERE conversation_key = :k", k=key
    )


async def set_status(client, ids, agent_id, status):
    answer = await client.put(
        f"/v1/agents/{agent_id}/status", headers=ids.as_agent(agent_id), json={"status": status}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def act(client, ids, agent_id, conversation_id, action, **body):
    """POST an agent action (replies, resolve, accept, transfer, classification)."""
    return await client.post(
        f"/v1/conversations/{conversation_id}/{action}",
        headers=ids.as_agent(agent_id),
        json={"agent_id": agent_id, **body},
    )


async def holder_of(client, ids, conversation_id):
    answer = await client.get(f"/v1/conversations/{conversation_id}", headers=ids.as_ops)
    assert answer.status_code == 200, answer.text
    return answer.json()
