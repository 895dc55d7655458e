"""Replies going out: for each channel family, an inbound webhook reaches an agent through the
real ingest and router, the agent replies, and the provider's stand-in receives the call a real
provider would; retries on 5xx, none on 4xx, and the outcome visible on the conversation."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from shared.events import Channel, ReplyDelivered
from shared.ids import derived_id
from tests.conftest import eventually, produce, read_topic, running
from tests.integration.provider_standin import providers
from tests.integration.routerkit import act, assignments, holder_of, inbound, put_agent, send
from tests.integration.test_channels import (
    META_SECRET,
    TG_SECRET,
    X_SECRET,
    meta_signed,
    tg_update,
    x_signature,
)

ALL_CHANNELS = {c: 3 for c in ("chat", "email", "form", "telegram", "whatsapp", "messenger", "x")}


def telegram_in():
    update = tg_update(uuid.uuid4().int % 10**6, 1, "hello, my withdrawal is pending")
    return (
        "/v1/channels/telegram/webhook",
        json.dumps(update).encode(),
        {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "content-type": "application/json"},
    )


def whatsapp_in():
    raw, headers = meta_signed(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": "PHONE1"},
                                "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511999"}],
                                "messages": [
                                    {
                                        "from": "5511999",
                                        "id": f"wamid.{uuid.uuid4().hex}",
                                        "timestamp": "1764000000",
                                        "type": "text",
                                        "text": {"body": "hello, I need help"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    )
    return "/v1/channels/whatsapp/webhook", raw, headers


def messenger_in():
    raw, headers = meta_signed(
        {
            "object": "page",
            "entry": [
                {
                    "id": "PAGE1",
                    "messaging": [
                        {
                            "sender": {"id": "PSID1"},
                            "recipient": {"id": "PAGE1"},
                            "timestamp": 1764000000000,
                            "message": {
                                "mid": f"m_{uuid.uuid4().hex}",
                                "text": "hello, I need help",
                            },
                        }
                    ],
                }
            ],
        }
    )
    return "/v1/channels/messenger/webhook", raw, headers


def x_in():
    raw = json.dumps(
        {
            "for_user_id": "100",
            "direct_message_events": [
                {
                    "type": "message_create",
                    "id": uuid.uuid4().hex,
                    "created_timestamp": "1764000000000",
                    "message_create": {
                        "target": {"recipient_id": "100"},
                        "sender_id": "200",
                        "message_data": {"text": "hello, I need help"},
                    },
                }
            ],
        }
    ).encode()
    return (
        "/v1/channels/x/webhook",
        raw,
        {"x-twitter-webhooks-signature": x_signature(raw), "content-type": "application/json"},
    )


def email_in():
    raw = (
        f"From: Mei <mei@example.com>\r\nTo: support@exchange.example\r\n"
        f"Subject: help\r\nMessage-ID: <{uuid.uuid4().hex}@mail.example>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nhello, I need help\r\n"
    ).encode()
    return "/v1/channels/email/inbound", raw, {"content-type": "message/rfc822"}


def chat_in():
    body = {
        "visitor_id": "v9",
        "session_id": uuid.uuid4().hex,
        "message_id": "1",
        "text": "hello, I need help",
    }
    return (
        "/v1/channels/chat/messages",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )


def form_in():
    body = {
        "submission_id": uuid.uuid4().hex,
        "subject": "hello",
        "body": "I need help",
        "email": "ana@example.com",
    }
    return (
        "/v1/channels/form/tickets",
        json.dumps(body).encode(),
        {"content-type": "application/json"},
    )


CASES = {
    "telegram": (telegram_in, "/telegram", lambda b: b["chat_id"] == "777"),
    "whatsapp": (
        whatsapp_in,
        "/whatsapp/PHONE1",
        lambda b: b["to"] == "5511999" and b["text"] == {"body": "We are on it."},
    ),
    "messenger": (
        messenger_in,
        "/messenger/PAGE1",
        lambda b: b["recipient"] == {"id": "PSID1"} and b["message"] == {"text": "We are on it."},
    ),
    "x": (x_in, "/x", lambda b: b["event"]["message_create"]["target"] == {"recipient_id": "200"}),
    "chat": (chat_in, "/hook/chat", lambda b: b["text"] == "We are on it."),
    "form": (form_in, "/hook/form", lambda b: b["conversation_key"].startswith("form:SB-")),
}


def settings(common, provider_settings, **extra):
    return IngestSettings(
        **{**common, "dispatcher_enabled": True},
        telegram_secret_token=TG_SECRET,
        meta_app_secret=META_SECRET,
        meta_verify_token="v",
        x_consumer_secret=X_SECRET,
        delivery_backoff_s=0.05,
        **provider_settings,
        **extra,
    )


async def converse(ingest, router, ids, agent, inbound):
    """Customer writes in, the agent gets it and replies; the conversation id."""
    path, content, headers = inbound()
    headers = {**headers, **ids.as_ingest}
    answer = await ingest.post(path, content=content, headers=headers)
    assert answer.status_code in (200, 202), answer.text
    got = await assignments(router, ids, agent, wait=15)
    conv_id = got["conversations"][0]["id"]
    reply = await act(router, ids, agent, conv_id, "replies", text="We are on it.")
    assert reply.status_code == 201, reply.text
    return conv_id


async def delivery_of(router, ids, conv_id):
    messages = (await holder_of(router, ids, conv_id))["messages"]
    out = [m for m in messages if m["direction"] == "outbound"]
    return out[-1]["delivery_status"] if out else None


@pytest.mark.parametrize("channel", sorted(CASES))
async def test_a_reply_reaches_the_customer_on_their_channel(common, ids, channel):
    inbound, path, check = CASES[channel]
    agent = ids.agent_ids[0]
    async with providers() as (calls, _, provider_settings):
        ingest_app = create_ingest(settings(common, provider_settings))
        async with (
            running(ingest_app) as ingest,
            running(create_router(RouterSettings(**common))) as router,
        ):
            await put_agent(
                router,
                ids,
                agent,
                skills={"general": 1, "funds": 1},
                languages=["en", "zh"],
                capacity=ALL_CHANNELS,
            )
            conv_id = await converse(ingest, router, ids, agent, inbound)

            async def delivered():
                return calls.of(path) or None

            (body,) = await eventually(delivered, what=f"the {channel} provider called")
            assert check(body), body

            async def status():
                return await delivery_of(router, ids, conv_id) == "sent" or None

            await eventually(status, what="delivery status on the conversation")


async def test_an_email_reply_goes_out_over_smtp_in_the_thread(common, ids):
    agent = ids.agent_ids[0]
    async with providers() as (_, mailbox, provider_settings):
        async with (
            running(create_ingest(settings(common, provider_settings))) as ingest,
            running(create_router(RouterSettings(**common))) as router,
        ):
            await put_agent(router, ids, agent, skills={"general": 1}, capacity=ALL_CHANNELS)
            await converse(ingest, router, ids, agent, email_in)

            async def mailed():
                return mailbox.messages or None

            (envelope,) = await eventually(mailed, what="the reply mailed")
    assert envelope.rcpt_tos == ["mei@example.com"]
    content = envelope.content.decode()
    assert "In-Reply-To: <" in content and "We are on it." in content


async def test_5xx_is_retried_4xx_is_not_and_failures_are_dead_lettered(
    common, ids, broker, topics
):
    agent = ids.agent_ids[0]
    async with providers() as (calls, _, provider_settings):
        async with (
            running(create_ingest(settings(common, provider_settings))) as ingest,
            running(create_router(RouterSettings(**common))) as router,
        ):
            await put_agent(
                router,
                ids,
                agent,
                skills={"general": 1, "funds": 1},
                languages=["en", "zh"],
                capacity=ALL_CHANNELS,
            )
            calls.fail_next[:] = [503, 502]
            first = await converse(ingest, router, ids, agent, telegram_in)

            async def sent():
                return await delivery_of(router, ids, first) == "sent" or None

            await eventually(sent, what="delivered after two 5xx")
            assert len(calls.of("/telegram")) == 1

            calls.fail_next[:] = [400]
            second = await converse(ingest, router, ids, agent, whatsapp_in)

            async def failed():
                return await delivery_of(router, ids, second) == "failed" or None

            await eventually(failed, what="failed at once on a 4xx")
            assert calls.of("/whatsapp") == [] and calls.fail_next == []
            view = await holder_of(router, ids, second)
            assert "refused" in view["messages"][-1]["delivery_detail"]

            async def counted():  # ingest's own metrics count its dispatcher's records
                scrape = await ingest.get("/metrics/service", headers=ids.as_ops)
                found = {
                    s.name: s.value
                    for family in text_string_to_metric_families(scrape.text)
                    for s in family.samples
                    if s.labels.get("service") == "ingest"
                }
                return (
                    found.get("switchboard_records_dead_lettered_total") == 1
                    and found.get("switchboard_records_applied_total", 0) >= 1
                ) or None

            await eventually(counted, what="ingest's dispatcher records counted")
    letters = [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.dead_letter)]
    assert len(letters) == 1 and "not delivered" in letters[0]["reason"]
    assert letters[0]["source_topic"] == topics.outbound


async def test_the_router_takes_delivery_statuses_from_their_own_topic_only(
    common, ids, broker, topics
):
    agent = ids.agent_ids[0]
    router_app = create_router(RouterSettings(**common))
    async with running(router_app) as router:
        await put_agent(router, ids, agent, skills={"general": 1}, capacity=ALL_CHANNELS)
        await send(broker, topics, inbound(uuid.uuid4().hex, "hello, I need help"))
        got = await assignments(router, ids, agent, wait=15)
        conv_id = got["conversations"][0]["id"]
        reply = await act(router, ids, agent, conv_id, "replies", text="We are on it.")
        assert reply.status_code == 201, reply.text
        reply_id = uuid.UUID(reply.json()["message_id"])
        delivered = ReplyDelivered(
            event_id=derived_id("reply_delivered", reply_id),
            occurred_at=datetime.now(UTC),
            conversation_id=uuid.UUID(conv_id),
            channel=Channel.CHAT,
            message_id=reply_id,
            attempts=1,
        ).model_dump_json()
        # As ingest's dispatcher reports it, after a record there that is not a status.
        await produce(
            broker.bootstrap,
            topics.delivery_events,
            [(conv_id, b"not a delivery status"), (conv_id, delivered.encode())],
        )

        async def sent():
            return await delivery_of(router, ids, conv_id) == "sent" or None

        await eventually(sent, what="the delivery status on the reply")
        subscribed = router_app.state.deliveries_loop.consumer.subscription()
        assert subscribed == {topics.delivery_events}  # no conversation events

        async def dead_lettered():
            letters = [
                json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.dead_letter)
            ]
            return [x for x in letters if x["source_topic"] == topics.delivery_events] or None

        (letter,) = await eventually(dead_lettered, what="the bad status dead-lettered")
    assert letter["value"] == "not a delivery status"


async def test_a_ticket_number_finds_its_conversation(common, ids):
    agent = ids.agent_ids[0]
    async with (
        running(create_ingest(settings(common, {}))) as ingest,
        running(create_router(RouterSettings(**common))) as router,
    ):
        await put_agent(router, ids, agent, skills={"general": 1}, capacity=ALL_CHANNELS)
        path, content, headers = form_in()
        answer = await ingest.post(path, content=content, headers={**headers, **ids.as_ingest})
        ticket = answer.json()["ticket"]
        got = await assignments(router, ids, agent, wait=15)
        found = await router.get(f"/v1/tickets/{ticket}", headers=ids.as_ops)
        quoted_in_lower_case = await router.get(f"/v1/tickets/{ticket.lower()}", headers=ids.as_ops)
        quoted_in_mixed_case = await router.get(
            f"/v1/tickets/{ticket[:5].lower()}{ticket[5:]}", headers=ids.as_ops
        )
        unknown = await router.get("/v1/tickets/sb-aaaa-aaaa", headers=ids.as_ops)
        malformed = await router.get("/v1/tickets/nope", headers=ids.as_ops)
    assert found.status_code == 200
    assert found.json()["id"] == got["conversations"][0]["id"]
    assert quoted_in_lower_case.status_code == 200, quoted_in_lower_case.text
    assert quoted_in_lower_case.json()["id"] == found.json()["id"]
    assert quoted_in_mixed_case.json()["id"] == found.json()["id"]
    assert unknown.status_code == 404 and "SB-AAAA-AAAA" in unknown.json()["detail"]
    assert malformed.status_code == 422


async def test_an_email_thread_stays_one_conversation_with_its_agent(common, ids):
    agent = ids.agent_ids[0]
    root = uuid.uuid4().hex

    def email(n: int, refs: list[str]) -> bytes:
        headers = f"References: {' '.join(f'<{r}@mail.example>' for r in refs)}\r\n" if refs else ""
        return (
            f"From: Mei <mei@example.com>\r\nTo: support@exchange.example\r\n"
            f"Subject: deposit\r\nMessage-ID: <{root if n == 0 else uuid.uuid4().hex}"
            f"@mail.example>\r\n{headers}Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"message {n}\r\n\r\n> quoted earlier text\r\n"
        ).encode()

    async with (
        running(create_ingest(settings(common, {}))) as ingest,
        running(create_router(RouterSettings(**common))) as router,
    ):
        await put_agent(router, ids, agent, skills={"general": 1}, capacity=ALL_CHANNELS)
        for n, refs in enumerate([[], [root], [root, "reply-1"]]):
            answer = await ingest.post(
                "/v1/channels/email/inbound",
                content=email(n, refs),
                headers={**ids.as_ingest, "content-type": "message/rfc822"},
            )
            assert answer.status_code == 200

        async def three_messages():
            got = await assignments(router, ids, agent, wait=5)
            convs = got["conversations"]
            return convs if convs and len(convs[0]["messages"]) == 3 else None

        (conv,) = await eventually(three_messages, what="one conversation with three messages")
    assert [m["text"].split("\n")[0] for m in conv["messages"]] == [
        "message 0",
        "message 1",
        "message 2",
    ]
    assert conv["conversation_key"] == f"email:{root}@mail.example"
