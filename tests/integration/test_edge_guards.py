"""The edge refuses what would later be lost or forged: an X CRC token that could be a delivery
body (the CRC answer would be that body's signature), and text PostgreSQL cannot store, whatever
the body's content type or encoding. Whatever ingest answers 2xx, the router applies."""

import base64
import hashlib
import hmac
import json
import uuid
from urllib.parse import urlencode

import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from shared.db import make_engine
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import assignments, inbound, put_agent, scalar, send

X_SECRET = "x-consumer-secret"
META_SECRET = "meta-app-secret"
META_VERIFY = "meta-verify-token"
TG_SECRET = "tg-secret-token"
AS_TELEGRAM = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "content-type": "text/plain"}
PROBLEM = "application/problem+json"


@pytest.fixture
def ingest_app(common):
    return create_ingest(
        IngestSettings(
            **common,
            x_consumer_secret=X_SECRET,
            meta_app_secret=META_SECRET,
            meta_verify_token=META_VERIFY,
            telegram_secret_token=TG_SECRET,
        )
    )


async def published(broker, topics):
    return [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.inbound)]


def x_delivery(text: str) -> bytes:
    body = {
        "for_user_id": "4337869213",
        "direct_message_events": [
            {
                "type": "message_create",
                "id": uuid.uuid4().hex,
                "message_create": {
                    "sender_id": "66600666",
                    "message_data": {"text": text},
                },
            }
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def b64_hmac(secret: str, payload: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), payload, hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------- finding 1: the CRC oracle


async def test_a_crc_token_that_is_a_delivery_body_gets_no_signature_and_forges_nothing(
    ingest_app, broker, topics
):
    forged = x_delivery("refund to wallet 0xdeadbeef")
    async with running(ingest_app) as client:
        crc = await client.get("/v1/channels/x/webhook", params={"crc_token": forged.decode()})
        # What the attack did: sign the body through the CRC, then deliver it.
        token = crc.json().get("response_token", "")
        delivery = await client.post(
            "/v1/channels/x/webhook",
            content=forged,
            headers={"x-twitter-webhooks-signature": token, "content-type": "application/json"},
        )
    assert crc.status_code == 400, crc.text
    assert crc.headers["content-type"] == PROBLEM
    assert "crc_token" in crc.json()["detail"]
    assert delivery.status_code in (401, 403)
    assert await published(broker, topics) == []


@pytest.mark.parametrize(
    "token",
    [
        '{"for_user_id":"1"}',
        "abc def ghi",  # a space: not in X's alphabet
        'a"b:c,d',
        "x" * 129,  # longer than any token X sends
        "short",  # shorter than any token X sends
        "abc==def",  # padding only at the end
    ],
)
async def test_crc_tokens_not_shaped_like_xs_are_refused(ingest_app, token):
    async with running(ingest_app) as client:
        crc = await client.get("/v1/channels/x/webhook", params={"crc_token": token})
    assert crc.status_code == 400 and crc.headers["content-type"] == PROBLEM
    assert "response_token" not in crc.json()


@pytest.mark.parametrize(
    "token",
    [
        # What X sends today: base64 (unpadded) of a UUID.
        # Fixed values: pytest-xdist workers must collect the same parameters.
        base64.b64encode(str(uuid.UUID(int=0x57F1A21E76459AEFB9F40441E70430A3)).encode())
        .decode()
        .rstrip("="),
        base64.urlsafe_b64encode(uuid.UUID(int=0xA2BC9F6BD6960F3CCF3FF2A6F8C9D7E1).bytes).decode(),
        base64.b64encode(b"\xfb\xff" * 16).decode(),  # standard alphabet with + and /
        "9b4507b3",
    ],
)
async def test_crc_tokens_shaped_like_xs_are_answered_with_the_consumer_secret(ingest_app, token):
    async with running(ingest_app) as client:
        crc = await client.get("/v1/channels/x/webhook", params={"crc_token": token})
    assert crc.status_code == 200, crc.text
    assert crc.json() == {"response_token": f"sha256={b64_hmac(X_SECRET, token.encode())}"}


async def test_the_meta_handshake_echoes_the_challenge_and_nothing_signed(ingest_app):
    challenge = x_delivery("hello").decode()[:200]
    async with running(ingest_app) as client:
        echoed = await client.get(
            "/v1/channels/whatsapp/webhook",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": META_VERIFY,
                "hub.challenge": "1158201444",
            },
        )
        without_token = await client.get(
            "/v1/channels/messenger/webhook",
            params={"hub.mode": "subscribe", "hub.challenge": challenge},
        )
    assert echoed.status_code == 200 and echoed.text == "1158201444"
    assert without_token.status_code == 403
    assert hmac.new(META_SECRET.encode(), b"1158201444", hashlib.sha256).hexdigest() not in (
        echoed.text
    )


# ---------------------------------------------------------------- finding 3: one text guard


def chat(text: str, message_id: str = "m-1", name: str = "Mei") -> dict[str, object]:
    return {
        "channel": "chat",
        "channel_message_id": message_id,
        "conversation_ref": f"visitor-{message_id}",
        "customer": {"id": "visitor-1", "name": name},
        "text": text,
    }


@pytest.mark.parametrize(
    "content_type",
    ["application/JSON", "Application/Json; charset=utf-8", "text/plain", None],
)
async def test_nul_is_refused_whatever_the_content_type_says(
    ingest_app, ids, broker, topics, content_type
):
    headers = {**ids.as_ingest}
    if content_type:
        headers["content-type"] = content_type
    body = json.dumps(chat("refund me", name="Mei\x00")).encode()
    async with running(ingest_app) as client:
        answer = await client.post("/v1/messages", content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert "body.customer.name contains a NUL character" in answer.json()["detail"]
    assert await published(broker, topics) == []


def tg_update(update_id: int, text: str, first_name: str = "Mei") -> dict[str, object]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1764000000,
            "from": {"id": 7, "is_bot": False, "first_name": first_name},
            "chat": {"id": 7, "type": "private"},
            "text": text,
        },
    }


async def test_a_provider_webhook_is_guarded_whatever_its_content_type(ingest_app, broker, topics):
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/channels/telegram/webhook",
            content=json.dumps(tg_update(1, "hello", first_name="Mei\x00")).encode(),
            headers=AS_TELEGRAM,
        )
    assert answer.status_code == 422, answer.text
    assert "body.message.from.first_name contains a NUL" in answer.json()["detail"]
    assert await published(broker, topics) == []


async def test_a_form_encoded_body_with_nul_is_refused_saying_where(ingest_app, ids):
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/messages",
            content=urlencode({"text": "a\x00b"}).encode(),
            headers={**ids.as_ingest, "content-type": "Application/X-WWW-Form-Urlencoded"},
        )
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
    assert "body.text contains a NUL character" in answer.json()["detail"]


def raw_mail(*, subject: str = "Help", body: bytes = b"hello", cte: str = "7bit") -> bytes:
    return (
        b"From: Mei <mei@example.com>\r\n"
        b"To: support@exchange.example\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-ID: <" + uuid.uuid4().hex.encode() + b"@mail.example>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body + b"\r\n"
    )


LONE_SURROGATE_BODY = raw_mail(body=b"hi \\ud83d").replace(b"utf-8", b"unicode_escape")


@pytest.mark.parametrize(
    ("raw", "where", "what"),
    [
        (raw_mail(body=b"my funds=00 are gone", cte="quoted-printable"), "body", "NUL"),
        (raw_mail(body=base64.b64encode(b"gone\x00"), cte="base64"), "body", "NUL"),
        (raw_mail(subject="=?utf-8?q?funds=00gone?="), "the Subject header", "NUL"),
        (raw_mail(subject="=?utf-7?q?+2D0-?="), "the Subject header", "surrogate"),
        # A charset label naming a Python codec that turns clean bytes into a lone surrogate.
        (LONE_SURROGATE_BODY, "body", "surrogate"),
    ],
)
async def test_an_email_decoding_to_unstorable_text_is_refused(
    ingest_app, ids, broker, topics, raw, where, what
):
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/channels/email/inbound",
            content=raw,
            headers={**ids.as_ingest, "content-type": "message/rfc822"},
        )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    detail = answer.json()["detail"]
    assert where in detail and what in detail and "cannot be stored" in detail
    assert await published(broker, topics) == []


async def test_an_inbound_parse_form_with_nul_in_its_text_is_refused(ingest_app, ids):
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="headers"\r\n\r\n'
        "From: Li <li@example.com>\r\nSubject: hi\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="text"\r\n\r\n'
        "withdrawal\x00missing\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/channels/email/inbound",
            content=body,
            headers={**ids.as_ingest, "content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert answer.status_code == 422, answer.text
    assert "NUL" in answer.json()["detail"]


async def test_nul_in_a_header_is_refused(ingest_app, ids):
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/messages",
            json=chat("hello"),
            headers={**ids.as_ingest, "x-request-id": "a\x00b"},
        )
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
    assert "the x-request-id header contains a NUL character" in answer.json()["detail"]


async def test_nul_in_an_agent_reply_sent_as_application_json_uppercase_is_refused(
    common, ids, broker, topics
):
    agent = ids.agent_ids[0]
    async with running(create_router(RouterSettings(**common))) as client:
        await put_agent(client, ids, agent)
        await send(broker, topics, inbound("guarded", "hello"))
        conversation_id = (await assignments(client, ids, agent, wait=10))["conversations"][0]["id"]
        reply = await client.post(
            f"/v1/conversations/{conversation_id}/replies",
            content=json.dumps({"agent_id": agent, "text": "on\x00it"}).encode(),
            headers={**ids.as_agent(agent), "content-type": "application/JSON"},
        )
        fine = await client.post(
            f"/v1/conversations/{conversation_id}/replies",
            content=json.dumps({"agent_id": agent, "text": "on it"}).encode(),
            headers={**ids.as_agent(agent), "content-type": "application/JSON"},
        )
    assert reply.status_code == 422, reply.text
    assert "body.text contains a NUL character" in reply.json()["detail"]
    assert fine.status_code == 201


async def test_every_message_ingest_accepts_the_router_applies(
    ingest_app, common, ids, broker, topics
):
    """Odd but storable text, through the spellings of JSON and a webhook's own content type,
    is accepted and applied; what is refused is never published; nothing is dead-lettered."""
    texts = ["\x01 control", "\ufffd replaced", "😀 emoji", "\\u0000 literally", "tab\tand\nline"]
    spellings = ["application/json", "application/JSON", "Application/Json; charset=utf-8"]
    async with running(ingest_app) as client:
        for i, text in enumerate(texts):
            body = json.dumps(chat(text, message_id=f"ok-{i}")).encode()
            headers = {**ids.as_ingest, "content-type": spellings[i % len(spellings)]}
            answer = await client.post("/v1/messages", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
        telegram = await client.post(
            "/v1/channels/telegram/webhook",
            content=json.dumps(tg_update(1, "via telegram \x7f")).encode(),
            headers=AS_TELEGRAM,
        )
        assert telegram.status_code == 200 and telegram.json()["accepted"] == 1
        refused = [
            await client.post(
                "/v1/messages",
                content=json.dumps(chat("nope", message_id="bad", name="x\x00")).encode(),
                headers={**ids.as_ingest, "content-type": "application/JSON"},
            ),
            await client.post(
                "/v1/channels/telegram/webhook",
                content=json.dumps(tg_update(2, "no\x00pe")).encode(),
                headers=AS_TELEGRAM,
            ),
        ]
    assert [r.status_code for r in refused] == [422, 422]
    expected = {*texts, "via telegram \x7f"}
    engine = make_engine(common["database_url"], pool_size=1)
    try:
        async with running(create_router(RouterSettings(**common))):

            async def applied():
                count = await scalar(engine, "SELECT count(*) FROM router.messages")
                return count == len(expected)

            await eventually(applied, timeout=20, what="every accepted message applied")
            stored = await scalar(engine, "SELECT string_agg(text, '|') FROM router.messages")
    finally:
        await engine.dispose()
    assert set(stored.split("|")) == expected
    assert await read_topic(broker.bootstrap, topics.dead_letter) == []
