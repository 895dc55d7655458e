"""Issue 15, one test per case: deliveries as the providers document them (the Telegram Bot API,
the WhatsApp Cloud API webhook reference with its business-scoped user ids, groups and edits,
Messenger, the X Account Activity API, and mail as Gmail writes it) through the real ingest app
and broker. Every customer message reaches the topic; what does not is dead-lettered or counted."""

import json
from email.message import EmailMessage

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.app import create_app
from services.ingest.channels.email import strip_quotes_and_signature
from services.ingest.settings import IngestSettings
from shared.events import Channel
from shared.ids import message_id_for
from tests.conftest import read_topic, running
from tests.integration.channelkit import channel_ingest, published
from tests.integration.test_channels import (
    TG_SECRET,
    meta_signed,
    x_signature,
)

TG_HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
PHONE_NUMBER_ID = "106540352242922"


@pytest.fixture
def ingest_app(common):
    return channel_ingest(common)


# A WhatsApp message and its edit, as the Cloud API's webhook reference shows them.
WA_ORIGINAL = {
    "from": "16505551234",
    "id": "wamid.ORIG",
    "timestamp": "1739321000",
    "type": "text",
    "text": {"body": "I sent 2 BTC"},
}
WA_EDIT = {
    "from": "16505551234",
    "id": "wamid.EDIT",
    "timestamp": "1739321024",
    "type": "edit",
    "edit": {
        "original_message_id": "wamid.ORIG",
        "message": {
            "context": {"id": "wamid.ORIG"},
            "type": "text",
            "text": {"body": "I sent 3 BTC"},
        },
    },
}


async def dead_letters(broker, topics):
    return [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.dead_letter)]


def whatsapp(messages, contacts=(), statuses=()):
    """A notification as the Cloud API webhook reference draws it."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": list(contacts),
        "messages": list(messages),
    }
    if statuses:
        value["statuses"] = list(statuses)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }


async def post_whatsapp(client, body):
    raw, headers = meta_signed(body)
    return await client.post("/v1/channels/whatsapp/webhook", content=raw, headers=headers)


def tg_message(message_id, chat=None, **content):
    return {
        "message_id": message_id,
        "date": 1764000000,
        "from": {"id": 5001, "is_bot": False, "first_name": "Aiko", "language_code": "ja"},
        "chat": chat or {"id": 5001, "type": "private", "first_name": "Aiko"},
        **content,
    }


# ---------------------------------------------------------------- 1


async def test_1_a_whatsapp_user_known_only_by_username_is_answered_and_read_alone(
    ingest_app, broker, topics
):
    body = whatsapp(
        [
            {
                "from_user_id": "US.13491208655302741918",
                "id": "wamid.U1",
                "timestamp": "1749416383",
                "type": "text",
                "text": {"body": "I cannot log in to my account"},
            },
            {"id": "wamid.BROKEN", "timestamp": "1749416384", "type": "text", "text": {}},
            {
                "from": "16505551234",
                "id": "wamid.P1",
                "timestamp": "1749416385",
                "type": "text",
                "text": {"body": "My deposit is missing"},
            },
        ],
        contacts=[
            {
                "profile": {"name": "Sheena", "username": "@sheena"},
                "user_id": "US.13491208655302741918",
            },
            {"profile": {"name": "Pat"}, "wa_id": "16505551234", "user_id": "US.1"},
        ],
    )
    async with running(ingest_app) as client:
        answer = await post_whatsapp(client, body)
        again = await post_whatsapp(client, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2 and answer.json()["dead_lettered"] == 1
    assert again.json()["message_ids"] == answer.json()["message_ids"]
    by_id = {e["channel_message_id"]: e for e in await published(broker, topics)}
    username, phone = by_id["wamid.U1"], by_id["wamid.P1"]
    assert username["customer"]["id"] == "wa:US.13491208655302741918"
    assert username["customer"]["name"] == "Sheena"
    assert username["conversation_key"] == f"whatsapp:{PHONE_NUMBER_ID}:US.13491208655302741918"
    assert phone["customer"]["id"] == "wa:16505551234"
    letter = (await dead_letters(broker, topics))[0]
    assert letter["source_topic"] == "webhook:whatsapp"
    assert letter["reason"].startswith("missing_sender")
    assert json.loads(letter["value"])["id"] == "wamid.BROKEN"


# ---------------------------------------------------------------- 2


TELEGRAM_KINDS = [
    (
        {
            "voice": {
                "file_id": "AwACAgVoice",
                "file_unique_id": "v",
                "duration": 12,
                "mime_type": "audio/ogg",
            }
        },
        "[voice message 0:12]",
        {"kind": "voice", "ref": "AwACAgVoice", "content_type": "audio/ogg"},
    ),
    (
        {
            "audio": {
                "file_id": "CQACAgAudio",
                "file_unique_id": "a",
                "duration": 205,
                "performer": "Ana",
                "title": "Statement",
                "mime_type": "audio/mpeg",
            }
        },
        "[audio Ana – Statement 3:25]",
        {"kind": "audio", "ref": "CQACAgAudio"},
    ),
    (
        {
            "forward_origin": {
                "type": "user",
                "date": 1763990000,
                "sender_user": {"id": 9, "is_bot": False, "first_name": "B"},
            },
            "video": {
                "file_id": "BAACAgVideo",
                "file_unique_id": "vi",
                "width": 640,
                "height": 360,
                "duration": 31,
            },
        },
        "[video 0:31]",
        {"kind": "video", "ref": "BAACAgVideo"},
    ),
    (
        {
            "video_note": {
                "file_id": "DQACAgNote",
                "file_unique_id": "n",
                "length": 240,
                "duration": 8,
            }
        },
        "[video message 0:08]",
        {"kind": "video_note", "ref": "DQACAgNote"},
    ),
    (
        {
            "sticker": {
                "file_id": "CAACAgSticker",
                "file_unique_id": "s",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "😀",
            }
        },
        "[sticker 😀]",
        {"kind": "sticker", "ref": "CAACAgSticker"},
    ),
    (
        {"location": {"latitude": 1.29, "longitude": 103.85}},
        "[location 1.29, 103.85]",
        {"kind": "location", "ref": "geo:1.29,103.85"},
    ),
    (
        {"contact": {"phone_number": "+6591234567", "first_name": "Wei", "user_id": 42}},
        "[contact Wei +6591234567]",
        {"kind": "contact", "ref": "tel:+6591234567"},
    ),
    (
        {
            "poll": {
                "id": "5431",
                "question": "Which coin?",
                "options": [{"text": "BTC", "voter_count": 0}, {"text": "ETH", "voter_count": 0}],
                "total_voter_count": 0,
                "is_closed": False,
                "is_anonymous": True,
                "type": "regular",
                "allows_multiple_answers": False,
            }
        },
        "[poll Which coin? – BTC / ETH]",
        {"kind": "poll", "ref": "5431"},
    ),
    (
        {
            "voice": {"file_id": "AwACAgCaptioned", "file_unique_id": "c", "duration": 3},
            "caption": "listen",
        },
        "listen",
        {"kind": "voice", "ref": "AwACAgCaptioned"},
    ),
]


async def test_2_telegram_voice_audio_video_stickers_locations_contacts_polls_reach_an_agent(
    ingest_app, broker, topics
):
    async with running(ingest_app) as client:
        for i, (content, _, _) in enumerate(TELEGRAM_KINDS):
            update = {"update_id": 100 + i, "message": tg_message(200 + i, **content)}
            answer = await client.post(
                "/v1/channels/telegram/webhook", json=update, headers=TG_HEADERS
            )
            assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    events = {e["channel_message_id"]: e for e in await published(broker, topics)}
    for i, (_, text, attachment) in enumerate(TELEGRAM_KINDS):
        event = events[f"5001:{200 + i}"]
        assert event["text"] == text
        (found,) = event["attachments"]
        assert attachment.items() <= found.items(), (text, found)


async def test_2_a_whatsapp_location_and_voice_note_reach_an_agent(ingest_app, broker, topics):
    sender = {"from": "6591234567", "timestamp": "1749416383"}
    body = whatsapp(
        [
            {
                **sender,
                "id": "wamid.L1",
                "type": "location",
                "location": {
                    "latitude": 1.29,
                    "longitude": 103.85,
                    "name": "Office",
                    "address": "1 Raffles Pl",
                },
            },
            {
                **sender,
                "id": "wamid.V1",
                "type": "audio",
                "audio": {
                    "mime_type": "audio/ogg; codecs=opus",
                    "sha256": "x",
                    "id": "1467",
                    "voice": True,
                },
            },
        ],
        contacts=[{"profile": {"name": "Wei"}, "wa_id": "6591234567"}],
    )
    async with running(ingest_app) as client:
        answer = await post_whatsapp(client, body)
    assert answer.json()["accepted"] == 2
    location, voice = await published(broker, topics)
    assert location["text"] == "[location Office, 1 Raffles Pl 1.29, 103.85]"
    assert location["attachments"][0]["ref"] == "geo:1.29,103.85"
    assert voice["text"] == "[voice message]"
    assert voice["attachments"][0]["ref"] == "1467" and voice["attachments"][0]["kind"] == "voice"


async def test_2_x_direct_messages_with_media_keep_the_media_url(ingest_app, broker, topics):
    body = {
        "for_user_id": "4337869213",
        "direct_message_events": [
            {
                "type": "message_create",
                "id": "1100",
                "created_timestamp": "1516403560557",
                "message_create": {
                    "target": {"recipient_id": "4337869213"},
                    "sender_id": "3001969357",
                    "message_data": {
                        "text": " https://t.co/abc123",
                        "entities": {"urls": [{"url": "https://t.co/abc123"}]},
                        "attachment": {
                            "type": "media",
                            "media": {
                                "id": 1,
                                "id_str": "1",
                                "media_url_https": "https://ton.twimg.com/thumb.jpg",
                                "url": "https://t.co/abc123",
                                "type": "video",
                                "video_info": {
                                    "duration_millis": 12000,
                                    "variants": [
                                        {
                                            "bitrate": 256000,
                                            "content_type": "video/mp4",
                                            "url": "https://video.twimg.com/low.mp4",
                                        },
                                        {
                                            "bitrate": 832000,
                                            "content_type": "video/mp4",
                                            "url": "https://video.twimg.com/high.mp4",
                                        },
                                        {
                                            "content_type": "application/x-mpegURL",
                                            "url": "https://video.twimg.com/pl.m3u8",
                                        },
                                    ],
                                },
                            },
                        },
                    },
                },
            },
            {
                "type": "message_create",
                "id": "1101",
                "message_create": {"sender_id": "4337869213", "message_data": {"text": "ours"}},
            },
        ],
        "direct_message_indicate_typing_events": [
            {"created_timestamp": "1", "sender_id": "3001969357"}
        ],
        "users": {"3001969357": {"id": "3001969357", "name": "Jordan"}},
    }
    raw = json.dumps(body).encode()
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/channels/x/webhook",
            content=raw,
            headers={
                "x-twitter-webhooks-signature": x_signature(raw),
                "content-type": "application/json",
            },
        )
    assert answer.json()["accepted"] == 1
    assert answer.json()["ignored_items"] == 2  # our own echo, the typing indicator
    (dm,) = await published(broker, topics)
    assert dm["text"] == "[video 0:12]"
    assert dm["attachments"][0]["ref"] == "https://video.twimg.com/high.mp4"
    assert dm["attachments"][0]["content_type"] == "video/mp4"


async def test_2_telegram_business_messages_reach_an_agent_and_the_business_own_are_ignored(
    ingest_app, broker, topics
):
    chat = {"id": 5001, "type": "private", "first_name": "Aiko"}
    customer = tg_message(7, chat, text="注文がキャンセルされました", business_connection_id="BCx1")
    own = tg_message(8, chat, text="確認します", business_connection_id="BCx1")
    own["from"] = {"id": 900, "is_bot": False, "first_name": "Exchange"}
    async with running(ingest_app) as client:
        first = await client.post(
            "/v1/channels/telegram/webhook",
            json={"update_id": 1, "business_message": customer},
            headers=TG_HEADERS,
        )
        second = await client.post(
            "/v1/channels/telegram/webhook",
            json={"update_id": 2, "business_message": own},
            headers=TG_HEADERS,
        )
    assert first.json()["accepted"] == 1 and second.json()["ignored_items"] == 1
    (event,) = await published(broker, topics)
    assert event["conversation_key"] == "telegram:5001:business:BCx1"  # replies go through it


# ---------------------------------------------------------------- 3


async def test_3_group_chats_are_their_own_conversations(ingest_app, broker, topics):
    group_message = {
        "from": "16505551234",
        "group_id": "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",
        "id": "wamid.G1",
        "timestamp": "1749416383",
        "type": "text",
        "text": {"body": "Our team account is locked"},
    }
    private = {**group_message, "id": "wamid.G2", "text": {"body": "And my own too"}}
    del private["group_id"]
    supergroup = {"id": -1001234567890, "type": "supergroup", "title": "VIP traders"}
    async with running(ingest_app) as client:
        await post_whatsapp(
            client,
            whatsapp(
                [group_message, private],
                contacts=[{"profile": {"name": "Pat"}, "wa_id": "16505551234"}],
            ),
        )
        await client.post(
            "/v1/channels/telegram/webhook",
            json={
                "update_id": 9,
                "message": tg_message(1, supergroup, text="withdrawals are stuck"),
            },
            headers=TG_HEADERS,
        )
    by_id = {e["channel_message_id"]: e for e in await published(broker, topics)}
    in_group, alone = by_id["wamid.G1"], by_id["wamid.G2"]
    assert in_group["conversation_key"] == (
        f"whatsapp:{PHONE_NUMBER_ID}:group:Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
    )
    assert in_group["group"] and in_group["customer"]["id"] == "wa:16505551234"
    assert alone["conversation_key"] == f"whatsapp:{PHONE_NUMBER_ID}:16505551234"
    assert alone["group"] is None
    telegram = by_id["-1001234567890:1"]
    assert telegram["conversation_key"] == "telegram:-1001234567890"
    assert telegram["group"] == "VIP traders" and telegram["customer"]["id"] == "tg:5001"


# ---------------------------------------------------------------- 4


async def test_4_whatsapp_edits_are_recorded_against_the_message_they_edit(
    ingest_app, broker, topics
):
    original, edit = WA_ORIGINAL, WA_EDIT
    contacts = [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}]
    async with running(ingest_app) as client:
        await post_whatsapp(client, whatsapp([original], contacts))
        answer = await post_whatsapp(client, whatsapp([edit], contacts))
    assert answer.json()["accepted"] == 1
    first, edited = await published(broker, topics)
    assert edited["text"] == "I sent 3 BTC"
    assert (
        edited["edit_of"]
        == first["message_id"]
        == str(message_id_for(Channel.WHATSAPP, "wamid.ORIG"))
    )
    assert edited["conversation_key"] == first["conversation_key"]


# ---------------------------------------------------------------- 5


async def test_5_the_bot_api_documentation_sample_without_chat_type_is_accepted(
    ingest_app, broker, topics
):
    sample = {
        "update_id": 10000,
        "message": {
            "date": 1441645532,
            "chat": {
                "last_name": "Test Lastname",
                "id": 1111111,
                "first_name": "Test",
                "username": "Test",
            },
            "message_id": 1365,
            "from": {
                "last_name": "Test Lastname",
                "id": 1111111,
                "first_name": "Test",
                "username": "Test",
            },
            "text": "/start",
        },
    }
    async with running(ingest_app) as client:
        answer = await client.post("/v1/channels/telegram/webhook", json=sample, headers=TG_HEADERS)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    (event,) = await published(broker, topics)
    assert event["conversation_key"] == "telegram:1111111" and event["group"] is None


# ---------------------------------------------------------------- 6


async def test_6_inline_images_of_an_html_alternative_are_listed_as_attachments(
    common, ids, broker, topics
):
    msg = EmailMessage()
    msg["From"] = "Mei <mei@example.com>"
    msg["To"] = "support@exchange.example"
    msg["Subject"] = "Screenshot of the error"
    msg["Message-ID"] = "<inline-1@mail.example>"
    msg.set_content("See the screenshot below.")
    msg.add_alternative(
        '<p>See the screenshot below.</p><img src="cid:shot1@mail.example">', subtype="html"
    )
    html = msg.get_payload()[1]
    html.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<shot1@mail.example>")
    async with running(create_app(IngestSettings(**common))) as client:
        answer = await client.post(
            "/v1/channels/email/inbound",
            content=msg.as_bytes(),
            headers={**ids.as_ingest, "content-type": "message/rfc822"},
        )
    assert answer.status_code == 200, answer.text
    (event,) = await published(broker, topics)
    assert event["text"].strip() == "See the screenshot below."
    (image,) = event["attachments"]
    assert image["content_type"] == "image/png" and image["ref"] == "cid:shot1@mail.example"
    assert image["kind"] == "inline" and image["size"] == 9


# ---------------------------------------------------------------- 7


GMAIL_REPLY = """My withdrawal is still pending after 3 hours.

On Mon, Nov 24, 2026 at 9:00 AM Exchange Support <
support@exchange.example> wrote:

> Thank you for contacting us about your account security.
> We have reset your password.
"""


def test_7_an_attribution_wrapped_over_two_lines_is_stripped():
    assert (
        strip_quotes_and_signature(GMAIL_REPLY) == "My withdrawal is still pending after 3 hours."
    )
    wrapped_without_angle = (
        "Thanks\nOn Mon, Nov 24, 2026 at 9:00 AM Exchange Support\nwrote:\nold text"
    )
    assert strip_quotes_and_signature(wrapped_without_angle) == "Thanks"
    # A line that merely starts with "On" stays.
    assert strip_quotes_and_signature("On Monday I sent 2 ETH\nstill nothing") == (
        "On Monday I sent 2 ETH\nstill nothing"
    )


async def test_7_the_quoted_history_of_a_gmail_reply_does_not_reach_classification(
    common, ids, broker, topics
):
    msg = EmailMessage()
    msg["From"] = "Mei <mei@example.com>"
    msg["To"] = "support@exchange.example"
    msg["Subject"] = "Re: your request"
    msg["Message-ID"] = "<reply-7@mail.example>"
    msg.set_content(GMAIL_REPLY)
    async with running(create_app(IngestSettings(**common))) as client:
        await client.post(
            "/v1/channels/email/inbound",
            content=msg.as_bytes(),
            headers={**ids.as_ingest, "content-type": "message/rfc822"},
        )
    (event,) = await published(broker, topics)
    assert (
        "security" not in event["text_for_routing"] and "password" not in event["text_for_routing"]
    )


# ---------------------------------------------------------------- what is ignored is counted


async def test_ignored_and_dead_lettered_items_are_counted_by_channel_and_reason(
    ingest_app, ids, broker, topics
):
    body = whatsapp(
        [
            {
                "from": "1",
                "id": "wamid.R",
                "type": "reaction",
                "reaction": {"message_id": "x", "emoji": "👍"},
            },
            {"from": "1", "type": "text", "text": {"body": "no id"}},
        ],
        statuses=[{"id": "wamid.OUT", "status": "read", "timestamp": "1", "recipient_id": "1"}] * 2,
    )
    async with running(ingest_app) as client:
        answer = await post_whatsapp(client, body)
        callback = await client.post(
            "/v1/channels/telegram/webhook",
            json={
                "update_id": 3,
                "callback_query": {"id": "q", "from": {"id": 1, "is_bot": False}},
            },
            headers=TG_HEADERS,
        )
        scrape = await client.get("/metrics/service", headers=ids.as_ops)
    assert answer.status_code == 200 and callback.status_code == 200
    assert answer.json() == {
        "accepted": 0,
        "message_ids": [],
        "ignored": None,
        "ignored_items": 3,
        "dead_lettered": 1,
    }
    families = {m.name: m for m in text_string_to_metric_families(scrape.text)}
    counted = {
        (s.labels["channel"], s.labels["outcome"], s.labels["reason"]): s.value
        for s in families["switchboard_items_skipped"].samples
        if s.name.endswith("_total")
    }
    assert counted == {
        ("whatsapp", "ignored", "status"): 2,
        ("whatsapp", "ignored", "reaction"): 1,
        ("whatsapp", "dead_lettered", "missing_id"): 1,
        ("telegram", "ignored", "not_a_message"): 1,
    }
    assert len(await dead_letters(broker, topics)) == 1
