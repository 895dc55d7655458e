"""For each adapter: any delivery shaped like the provider's schema (the Telegram Bot API Update,
the WhatsApp Cloud API notification, Messenger's Page events, X's Account Activity delivery),
with fields present, missing or of the wrong type, gives one outcome per item: a publishable
message with text, or a counted reason. Never an exception, never a silent drop."""

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.channels import meta, telegram, x
from services.ingest.channels.base import Incoming, UnstorableText, to_event
from services.ingest.channels.outcomes import Ignored, Unreadable

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
NOW = datetime(2026, 1, 1, tzinfo=UTC)

junk = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5) | st.just([]) | st.just({})
)
ids = st.integers(-(10**12), 10**12)
words = st.text(min_size=0, max_size=12)
durations = st.integers(0, 4000)
file = st.fixed_dictionaries(
    {"file_id": st.text(min_size=1, max_size=8), "file_unique_id": st.text(max_size=4)},
    optional={
        "duration": durations,
        "mime_type": words,
        "file_size": st.integers(0, 10**7),
        "file_name": words,
    },
)


def maybe(strategy):
    """A field as a provider sends it, or now and then of a wrong type."""
    return st.integers(0, 11).flatmap(lambda n: junk if n == 0 else strategy)


def shaped(required, optional):
    return st.fixed_dictionaries(
        {k: maybe(v) for k, v in required.items()},
        optional={k: maybe(v) for k, v in optional.items()},
    )


tg_user = shaped(
    {"id": ids, "is_bot": st.booleans(), "first_name": words},
    {
        "last_name": words,
        "username": words,
        "language_code": st.sampled_from(["en", "zh-hans", "ja"]),
    },
)
tg_chat = shaped(
    {"id": ids},
    {"type": st.sampled_from(["private", "group", "supergroup", "channel"]), "title": words},
)
tg_content = {
    "text": words,
    "caption": words,
    "photo": st.lists(file, max_size=3),
    "voice": file,
    "audio": file,
    "video": file,
    "video_note": file,
    "animation": file,
    "document": file,
    "sticker": shaped(
        {"file_id": st.text(min_size=1, max_size=4)}, {"emoji": st.sampled_from(["😀", "👍"])}
    ),
    "location": shaped({"latitude": st.floats(-90, 90), "longitude": st.floats(-180, 180)}, {}),
    "venue": shaped(
        {
            "location": st.fixed_dictionaries(
                {"latitude": st.floats(-90, 90), "longitude": st.floats(-180, 180)}
            ),
            "title": words,
            "address": words,
        },
        {},
    ),
    "contact": shaped(
        {"phone_number": words, "first_name": words}, {"last_name": words, "user_id": ids}
    ),
    "poll": shaped(
        {
            "id": words,
            "question": words,
            "options": st.lists(st.fixed_dictionaries({"text": words}), max_size=3),
        },
        {},
    ),
    "dice": shaped({"emoji": st.just("🎲"), "value": st.integers(1, 6)}, {}),
    "new_chat_members": st.lists(
        st.just({"id": 1, "is_bot": False, "first_name": "a"}), max_size=1
    ),
    "pinned_message": st.just({}),
    "forward_origin": st.just({"type": "hidden_user", "date": 1, "sender_user_name": "x"}),
    "story": st.just({"chat": {"id": 1, "type": "private"}, "id": 1}),
}
tg_message = shaped(
    {"message_id": st.integers(1, 10**6), "chat": tg_chat, "date": st.integers(0, 2 * 10**9)},
    {
        "from": tg_user,
        "edit_date": st.integers(0, 2 * 10**9),
        "business_connection_id": words,
        **tg_content,
    },
)
tg_update = st.fixed_dictionaries(
    {"update_id": st.integers(0, 10**9)},
    optional={
        k: tg_message
        for k in (
            "message",
            "edited_message",
            "business_message",
            "edited_business_message",
            "channel_post",
        )
    }
    | {"callback_query": st.just({"id": "q"}), "my_chat_member": st.just({})},
)


def assert_each_item_accounted(outcomes, items):
    """One outcome per item; each message publishable (or, for text PostgreSQL refuses,
    dead-lettered by the webhook), with text an agent can read."""
    assert len(outcomes) == items
    for outcome in outcomes:
        assert isinstance(outcome, Incoming | Ignored | Unreadable)
        if isinstance(outcome, Ignored | Unreadable):
            assert outcome.reason and " " not in outcome.reason  # a metric label: a fixed code
            continue
        assert outcome.text.strip()
        try:
            to_event(outcome, received_at=NOW)
        except UnstorableText:
            pass


@PROPERTY
@given(tg_update)
def test_any_telegram_update_gives_a_message_or_a_counted_reason(raw):
    update = telegram.Update.model_validate(raw)  # dicts at the envelope: always parses
    assert_each_item_accounted(telegram.read_update(update), 1)


wa_media = shaped(
    {"id": words},
    {
        "mime_type": words,
        "caption": words,
        "filename": words,
        "voice": st.booleans(),
        "emoji": words,
    },
)
wa_message = st.one_of(
    *(
        shaped(
            {"id": st.text(min_size=0, max_size=8), "type": st.just(kind), kind: body},
            {
                "from": st.text(max_size=12),
                "from_user_id": st.text(max_size=12),
                "timestamp": st.integers(0, 2 * 10**9).map(str),
                "group_id": words,
            },
        )
        for kind, body in {
            "text": shaped({"body": words}, {}),
            "image": wa_media,
            "audio": wa_media,
            "video": wa_media,
            "document": wa_media,
            "sticker": wa_media,
            "location": shaped(
                {"latitude": st.floats(-90, 90), "longitude": st.floats(-180, 180)},
                {"name": words, "address": words},
            ),
            "contacts": st.just({}),
            "button": shaped({"text": words}, {"payload": words}),
            "interactive": st.fixed_dictionaries(
                {},
                optional={
                    "button_reply": shaped({"id": words, "title": words}, {}),
                    "nfm_reply": st.just({}),
                },
            ),
            "reaction": shaped({"message_id": words, "emoji": words}, {}),
            "system": shaped({"body": words}, {}),
            "edit": shaped(
                {
                    "original_message_id": words,
                    "message": shaped(
                        {"type": st.just("text"), "text": shaped({"body": words}, {})}, {}
                    ),
                },
                {},
            ),
            "unsupported": st.just({}),
            "order": shaped({"product_items": st.lists(st.just({}), max_size=2)}, {}),
        }.items()
    )
)


@PROPERTY
@given(
    st.lists(wa_message, max_size=4),
    st.lists(st.just({"id": "wamid.S", "status": "read"}), max_size=2),
    st.lists(
        shaped(
            {"wa_id": words},
            {"user_id": words, "profile": shaped({"name": words}, {"username": words})},
        ),
        max_size=2,
    ),
)
def test_any_whatsapp_notification_gives_messages_or_counted_reasons(messages, statuses, contacts):
    raw = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "106540352242922"},
                            "contacts": contacts,
                            "messages": messages,
                            "statuses": statuses,
                        },
                    }
                ],
            }
        ],
    }
    outcomes = meta.read_whatsapp(meta.Notification.model_validate(raw))
    assert_each_item_accounted(outcomes, len(messages) + len(statuses))


fb_event = shaped(
    {
        "sender": shaped({"id": words}, {}),
        "recipient": st.just({"id": "PAGE"}),
        "timestamp": st.integers(0, 2 * 10**12),
    },
    {
        "message": shaped(
            {"mid": words},
            {
                "text": words,
                "is_echo": st.booleans(),
                "sticker_id": st.integers(0, 10),
                "attachments": st.lists(
                    shaped(
                        {
                            "type": st.sampled_from(
                                ["image", "audio", "video", "file", "location", "fallback"]
                            )
                        },
                        {
                            "payload": shaped(
                                {"url": words},
                                {
                                    "coordinates": st.fixed_dictionaries(
                                        {"lat": st.floats(-90, 90), "long": st.floats(-180, 180)}
                                    )
                                },
                            )
                        },
                    ),
                    max_size=2,
                ),
            },
        ),
        "message_edit": shaped({"mid": words, "text": words}, {"num_edit": st.integers(1, 5)}),
        "postback": shaped({"title": words, "payload": words}, {"mid": words}),
        "read": st.just({"watermark": 1}),
        "delivery": st.just({"mids": []}),
        "reaction": st.just({"mid": "m", "action": "react"}),
    },
)


@PROPERTY
@given(st.lists(fb_event | junk, max_size=4))
def test_any_messenger_notification_gives_messages_or_counted_reasons(events):
    raw = {"object": "page", "entry": [{"id": "PAGE", "time": 1, "messaging": events}]}
    outcomes = meta.read_messenger(meta.Notification.model_validate(raw))
    assert_each_item_accounted(outcomes, len(events))


x_media = shaped(
    {"type": st.sampled_from(["photo", "video", "animated_gif"]), "media_url_https": words},
    {
        "url": words,
        "video_info": shaped(
            {
                "duration_millis": st.integers(0, 10**6),
                "variants": st.lists(
                    shaped(
                        {"url": words}, {"bitrate": st.integers(0, 10**6), "content_type": words}
                    ),
                    max_size=2,
                ),
            },
            {},
        ),
    },
)
x_event = shaped(
    {
        "type": st.sampled_from(["message_create", "message_create", "other"]),
        "id": words,
        "message_create": shaped(
            {
                "sender_id": st.sampled_from(["1", "2", ""]),
                "message_data": shaped(
                    {"text": words},
                    {"attachment": shaped({"type": st.just("media"), "media": x_media}, {})},
                ),
            },
            {"target": st.just({"recipient_id": "1"})},
        ),
    },
    {"created_timestamp": st.integers(0, 2 * 10**12).map(str)},
)


@PROPERTY
@given(st.lists(x_event | junk, max_size=4), st.lists(st.just({"sender_id": "2"}), max_size=2))
def test_any_x_delivery_gives_messages_or_counted_reasons(events, typing):
    raw = {
        "for_user_id": "1",
        "direct_message_events": events,
        "direct_message_indicate_typing_events": typing,
    }
    outcomes = x.read_delivery(x.Delivery.model_validate(raw))
    assert_each_item_accounted(outcomes, len(events) + len(typing))
