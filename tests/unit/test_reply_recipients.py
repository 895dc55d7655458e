"""Replies go where the conversation is: a WhatsApp group's reply to the group, a user known
only by a business-scoped id through ``recipient``, a Telegram business chat through its
business connection."""

import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from services.ingest.outbound.senders import make_senders
from services.ingest.settings import IngestSettings
from shared.events import Channel, OutboundReply


def reply(channel: Channel, key: str) -> OutboundReply:
    return OutboundReply(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        conversation_id=uuid.uuid4(),
        conversation_key=key,
        channel=channel,
        message_id=uuid.uuid4(),
        agent_id="a1",
        text="We are on it",
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("whatsapp:106:16505551234", {"recipient_type": "individual", "to": "16505551234"}),
        ("whatsapp:106:US.134912", {"recipient_type": "individual", "recipient": "US.134912"}),
        ("whatsapp:106:group:Y2FwaV9n", {"recipient_type": "group", "to": "Y2FwaV9n"}),
    ],
)
async def test_a_whatsapp_reply_goes_to_the_person_or_the_group(key, expected):
    bodies = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={})

    settings = IngestSettings(meta_access_token="t", graph_api_base="http://graph.test")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        await make_senders(settings, http)[Channel.WHATSAPP](reply(Channel.WHATSAPP, key))
    (body,) = bodies
    assert expected.items() <= body.items()
    assert {"to", "recipient"} & body.keys() == expected.keys() - {"recipient_type"}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("telegram:-1001234", {"chat_id": "-1001234"}),
        ("telegram:5001:business:BCx1", {"chat_id": "5001", "business_connection_id": "BCx1"}),
    ],
)
async def test_a_telegram_reply_goes_to_the_chat_through_its_business_connection(key, expected):
    bodies = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"ok": True})

    settings = IngestSettings(telegram_bot_token="t", telegram_api_base="http://tg.test")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        await make_senders(settings, http)[Channel.TELEGRAM](reply(Channel.TELEGRAM, key))
    (body,) = bodies
    assert body == {**expected, "text": "We are on it"}
