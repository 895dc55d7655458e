"""Each channel's native webhook through the real ingest app and broker: payloads shaped as
the providers document them, signatures, handshakes, retries, and what comes out on the topic."""

import base64
import hashlib
import hmac
import json
import uuid

import pytest

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import running
from tests.integration.channelkit import (
    META_SECRET,
    META_VERIFY,
    TG_SECRET,
    X_SECRET,
    channel_ingest,
    published,
)


@pytest.fixture
def ingest_app(common):
    return channel_ingest(common)


def tg_update(update_id, message_id, text=None, *, edited=False, **extra):
    message = {
        "message_id": message_id,
        "date": 1764000000,
        "from": {
            "id": 777,
            "is_bot": False,
            "first_name": "Mei",
            "last_name": "Chen",
            "language_code": "zh-hans",
        },
        "chat": {"id": 777, "type": "private", "first_name": "Mei"},
        **({"text": text} if text is not None else {}),
        **extra,
    }
    if edited:
        message["edit_date"] = 1764000100
    return {"update_id": update_id, ("edited_message" if edited else "message"): message}


async def test_telegram_messages_edits_and_attachments_are_normalized(ingest_app, broker, topics):
    headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    async with running(ingest_app) as client:
        for body in (
            tg_update(1, 10, "我的提现还没到账"),
            tg_update(2, 10, "我的提现还没到账，已经三个小时了", edited=True),
            tg_update(
                3,
                11,
                caption="截图",
                photo=[
                    {
                        "file_id": "small",
                        "file_unique_id": "s",
                        "width": 90,
                        "height": 90,
                        "file_size": 1000,
                    },
                    {
                        "file_id": "big",
                        "file_unique_id": "b",
                        "width": 800,
                        "height": 800,
                        "file_size": 90000,
                    },
                ],
            ),
            tg_update(
                4,
                12,
                document={
                    "file_id": "doc1",
                    "file_name": "statement.pdf",
                    "mime_type": "application/pdf",
                    "file_size": 5000,
                },
            ),
            {"update_id": 5, "callback_query": {"id": "q", "from": {"id": 777}}},
        ):
            answer = await client.post("/v1/channels/telegram/webhook", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
        retry = await client.post(
            "/v1/channels/telegram/webhook", json=tg_update(1, 10, "x"), headers=headers
        )
    events = await published(broker, topics)
    assert retry.json()["message_ids"][0] == events[0]["message_id"]  # same delivery, same id
    first, edit, photo, document = events[:4]
    assert first["conversation_key"] == "telegram:777"
    assert first["customer"] == {
        "id": "tg:777",
        "name": "Mei Chen",
        "tier": "standard",
        "language": "zh",
    }
    assert first["sent_at"].startswith("2025-11-24")
    assert edit["channel_message_id"] == "777:10:edit:1764000100"
    assert edit["message_id"] != first["message_id"]
    assert edit["edit_of"] == first["message_id"]  # recorded against the message it edits
    assert photo["text"] == "截图"
    assert photo["attachments"] == [
        {"name": None, "content_type": "image/jpeg", "size": 90000, "ref": "big", "kind": "photo"}
    ]
    assert document["text"] == "[statement.pdf]"
    assert document["attachments"][0]["content_type"] == "application/pdf"


async def test_telegram_without_or_with_a_wrong_secret_publishes_nothing(
    ingest_app, broker, topics
):
    async with running(ingest_app) as client:
        missing = await client.post("/v1/channels/telegram/webhook", json=tg_update(1, 1, "hi"))
        wrong = await client.post(
            "/v1/channels/telegram/webhook",
            json=tg_update(1, 1, "hi"),
            headers={"X-Telegram-Bot-Api-Secret-Token": "guess"},
        )
        malformed = await client.post(
            "/v1/channels/telegram/webhook",
            json={"update_id": "x", "message": []},
            headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
        )
    assert missing.status_code == 401 and wrong.status_code == 403
    assert malformed.status_code == 422
    assert malformed.headers["content-type"] == "application/problem+json"
    assert await published(broker, topics) == []


def meta_signed(body: dict) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    digest = hmac.new(META_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": f"sha256={digest}", "content-type": "application/json"}


WHATSAPP = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922",
                        },
                        "contacts": [
                            {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
                        ],
                        "messages": [
                            {
                                "from": "16505551234",
                                "id": "wamid.A1",
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "My withdrawal is pending"},
                            },
                            {
                                "from": "16505551234",
                                "id": "wamid.A2",
                                "timestamp": "1749416390",
                                "type": "image",
                                "image": {
                                    "id": "media-9",
                                    "mime_type": "image/jpeg",
                                    "sha256": "abc",
                                    "caption": "see this",
                                },
                            },
                        ],
                    },
                },
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"phone_number_id": "106540352242922"},
                        "statuses": [
                            {
                                "id": "wamid.OUT",
                                "status": "delivered",
                                "timestamp": "1749416400",
                                "recipient_id": "16505551234",
                            }
                        ],
                    },
                },
            ],
        }
    ],
}


async def test_whatsapp_batches_are_split_and_statuses_ignored(ingest_app, broker, topics):
    raw, headers = meta_signed(WHATSAPP)
    async with running(ingest_app) as client:
        answer = await client.post("/v1/channels/whatsapp/webhook", content=raw, headers=headers)
        again = await client.post("/v1/channels/whatsapp/webhook", content=raw, headers=headers)
    assert answer.status_code == 200 and answer.json()["accepted"] == 2
    assert again.json()["message_ids"] == answer.json()["message_ids"]
    text, image = (await published(broker, topics))[:2]
    assert text["conversation_key"] == "whatsapp:106540352242922:16505551234"
    assert text["customer"]["name"] == "Sheena Nelson"
    assert text["customer"]["language"] == "en"
    assert image["text"] == "see this" and image["attachments"][0]["ref"] == "media-9"


async def test_meta_handshake_and_signatures(ingest_app, broker, topics):
    raw, headers = meta_signed(WHATSAPP)
    async with running(ingest_app) as client:
        ok = await client.get(
            "/v1/channels/messenger/webhook",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": META_VERIFY,
                "hub.challenge": "1158201444",
            },
        )
        bad_token = await client.get(
            "/v1/channels/whatsapp/webhook",
            params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
        )
        tampered = await client.post(
            "/v1/channels/whatsapp/webhook",
            content=raw.replace(b"pending", b"PENDING"),
            headers=headers,
        )
        unsigned = await client.post(
            "/v1/channels/whatsapp/webhook",
            content=raw,
            headers={"content-type": "application/json"},
        )
        wrong_object = await client.post(
            "/v1/channels/messenger/webhook", content=raw, headers=headers
        )
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert bad_token.status_code == 403
    assert tampered.status_code == 403 and unsigned.status_code == 401
    assert wrong_object.status_code == 422
    assert await published(broker, topics) == []


async def test_messenger_messages_and_edits_echoes_and_reads_ignored(ingest_app, broker, topics):
    body = {
        "object": "page",
        "entry": [
            {
                "id": "PAGE1",
                "time": 1764000000000,
                "messaging": [
                    {
                        "sender": {"id": "PSID9"},
                        "recipient": {"id": "PAGE1"},
                        "timestamp": 1764000000000,
                        "message": {"mid": "m_1", "text": "Bonjour, mon dépôt n'est pas arrivé"},
                    },
                    {
                        "sender": {"id": "PAGE1"},
                        "recipient": {"id": "PSID9"},
                        "timestamp": 1764000001000,
                        "message": {"mid": "m_2", "text": "echo", "is_echo": True},
                    },
                    {
                        "sender": {"id": "PSID9"},
                        "recipient": {"id": "PAGE1"},
                        "timestamp": 1764000002000,
                        "read": {"watermark": 1764000001000},
                    },
                    {
                        "sender": {"id": "PSID9"},
                        "recipient": {"id": "PAGE1"},
                        "timestamp": 1764000003000,
                        "message_edit": {
                            "mid": "m_1",
                            "text": "Bonjour, mon dépôt n'est toujours pas arrivé",
                            "num_edit": 1,
                        },
                    },
                ],
            }
        ],
    }
    raw, headers = meta_signed(body)
    async with running(ingest_app) as client:
        answer = await client.post("/v1/channels/messenger/webhook", content=raw, headers=headers)
    assert answer.json()["accepted"] == 2
    first, edit = await published(broker, topics)
    assert first["conversation_key"] == "messenger:PAGE1:PSID9"
    assert first["customer"]["language"] == "fr"
    assert edit["channel_message_id"] == "m_1:edit:1"
    assert edit["edit_of"] == first["message_id"]


def x_signature(raw: bytes) -> str:
    digest = hmac.new(X_SECRET.encode(), raw, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


async def test_x_crc_and_direct_messages_with_our_own_ignored(ingest_app, broker, topics):
    body = {
        "for_user_id": "4337869213",
        "direct_message_events": [
            {
                "type": "message_create",
                "id": "954491830116155396",
                "created_timestamp": "1516403560557",
                "message_create": {
                    "target": {"recipient_id": "4337869213"},
                    "sender_id": "3001969357",
                    "message_data": {"text": "계정이 해킹당했어요", "entities": {}},
                },
            },
            {
                "type": "message_create",
                "id": "954491830116155397",
                "created_timestamp": "1516403560600",
                "message_create": {
                    "target": {"recipient_id": "3001969357"},
                    "sender_id": "4337869213",
                    "message_data": {"text": "We are on it"},
                },
            },
        ],
        "users": {"3001969357": {"id": "3001969357", "name": "Jordan", "screen_name": "jb"}},
    }
    raw = json.dumps(body).encode()
    async with running(ingest_app) as client:
        crc = await client.get("/v1/channels/x/webhook", params={"crc_token": "9b4507b3"})
        answer = await client.post(
            "/v1/channels/x/webhook",
            content=raw,
            headers={
                "x-twitter-webhooks-signature": x_signature(raw),
                "content-type": "application/json",
            },
        )
        forged = await client.post(
            "/v1/channels/x/webhook",
            content=raw,
            headers={"x-twitter-webhooks-signature": x_signature(b"other")},
        )
    expected = base64.b64encode(
        hmac.new(X_SECRET.encode(), b"9b4507b3", hashlib.sha256).digest()
    ).decode()
    assert crc.json() == {"response_token": f"sha256={expected}"}
    assert answer.json()["accepted"] == 1 and forged.status_code == 403
    (dm,) = await published(broker, topics)
    assert dm["conversation_key"] == "x:4337869213:3001969357"
    assert dm["customer"] == {
        "id": "x:3001969357",
        "name": "Jordan",
        "tier": "standard",
        "language": "ko",
    }


async def test_chat_widget_and_form_ticket(ingest_app, ids, broker, topics):
    submission = uuid.uuid4().hex
    form = {
        "submission_id": submission,
        "subject": "Deposit missing",
        "body": "I sent 2 ETH yesterday and it is not credited",
        "email": "a@example.com",
        "category": "deposit",
        "exchange_uid": "U123",
    }
    async with running(ingest_app) as client:
        chat = await client.post(
            "/v1/channels/chat/messages",
            headers=ids.as_ingest,
            json={"visitor_id": "v1", "session_id": "s1", "message_id": "1", "text": "hello there"},
        )
        ticket = await client.post("/v1/channels/form/tickets", headers=ids.as_ingest, json=form)
        again = await client.post("/v1/channels/form/tickets", headers=ids.as_ingest, json=form)
        bad_email = await client.post(
            "/v1/channels/form/tickets",
            headers=ids.as_ingest,
            json={**form, "email": "not-an-email"},
        )
        no_key = await client.post("/v1/channels/form/tickets", json=form)
    assert chat.status_code == 202 and ticket.status_code == 202
    assert ticket.json()["ticket"] == again.json()["ticket"]
    assert ticket.json()["ticket"].startswith("SB-")
    assert bad_email.status_code == 422 and no_key.status_code == 401
    # Different conversations, different partitions: no order between them.
    by_channel = {e["channel"]: e for e in await published(broker, topics)}
    chat_event, form_event = by_channel["chat"], by_channel["form"]
    assert chat_event["conversation_key"] == "chat:s1"
    assert form_event["conversation_key"] == f"form:{ticket.json()['ticket']}"
    assert form_event["category"] == "deposit" and form_event["subject"] == "Deposit missing"
    assert form_event["customer"]["id"] == "uid:U123"
    assert form_event["ticket"] == ticket.json()["ticket"]


async def test_a_channel_without_its_secret_is_not_configured(common, broker, topics):
    async with running(create_app(IngestSettings(**common))) as client:
        answer = await client.post("/v1/channels/telegram/webhook", json=tg_update(1, 1, "hi"))
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
