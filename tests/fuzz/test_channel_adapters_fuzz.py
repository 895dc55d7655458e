"""Every channel adapter fed malformed, truncated, deeply nested, huge and wrongly encoded
payloads (correctly signed, so they reach the parser), and the email parser broken MIME: each
gets a 4xx or is ignored, the service stays up, and nothing is published."""

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import read_topic, running

pytestmark = pytest.mark.fuzz

TG, META, X = "fuzz-tg", "fuzz-meta", "fuzz-x"
VALID = {
    "telegram": {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1764000000,
            "from": {"id": 7, "is_bot": False, "first_name": "M"},
            "chat": {"id": 7, "type": "private"},
            "text": "hi",
        },
    },
    "whatsapp": {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "1"},
                            "contacts": [{"wa_id": "1", "profile": {"name": "A"}}],
                            "messages": [
                                {
                                    "from": "1",
                                    "id": "wamid.1",
                                    "timestamp": "1764000000",
                                    "type": "text",
                                    "text": {"body": "hi"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    },
    "messenger": {
        "object": "page",
        "entry": [
            {
                "id": "1",
                "time": 1764000000,
                "messaging": [
                    {
                        "sender": {"id": "2"},
                        "recipient": {"id": "1"},
                        "timestamp": 1764000000,
                        "message": {"mid": "m.1", "text": "hi"},
                    }
                ],
            }
        ],
    },
    "x": {
        "for_user_id": "1",
        "direct_message_events": [
            {
                "type": "message_create",
                "id": "1",
                "created_timestamp": "1764000000000",
                "message_create": {
                    "sender_id": "2",
                    "target": {"recipient_id": "1"},
                    "message_data": {"text": "hi"},
                },
            }
        ],
    },
    "chat": {"visitor_id": "v", "session_id": "s", "message_id": "m", "text": "hi"},
    "form": {"submission_id": "f", "subject": "s", "body": "b", "email": "a@example.com"},
}
PATHS = {
    "telegram": "/v1/channels/telegram/webhook",
    "whatsapp": "/v1/channels/whatsapp/webhook",
    "messenger": "/v1/channels/messenger/webhook",
    "x": "/v1/channels/x/webhook",
    "chat": "/v1/channels/chat/messages",
    "form": "/v1/channels/form/tickets",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def mutated(channel):
    """Bodies built from the valid one: broken, truncated, reshaped, nested, huge, re-encoded."""
    raw = json.dumps(VALID[channel]).encode()
    return st.one_of(
        st.binary(max_size=300),
        st.integers(1, len(raw) - 1).map(lambda n: raw[:n]),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(sorted(VALID[channel])), json_values, min_size=1).map(
            lambda d: json.dumps({**VALID[channel], **d}).encode()
        ),
        st.integers(200, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(1, 3).map(lambda k: b'{"a": "' + b"x" * (300_000 * k) + b'"}'),
        st.just(
            json.dumps(VALID[channel], ensure_ascii=False).replace("hi", "héllo ☃").encode("utf-16")
        ),
        st.just(raw.replace(b'"hi"', b'"h\xe9llo"')),  # latin-1 bytes where UTF-8 belongs
    )


def signed(channel, ids, body):
    headers = {"content-type": "application/json"}
    if channel == "telegram":
        headers["X-Telegram-Bot-Api-Secret-Token"] = TG
    elif channel in ("whatsapp", "messenger"):
        digest = hmac.new(META.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    elif channel == "x":
        digest = hmac.new(X.encode(), body, hashlib.sha256).digest()
        headers["x-twitter-webhooks-signature"] = "sha256=" + base64.b64encode(digest).decode()
    else:
        headers |= ids.as_ingest
    return headers


BROKEN_MIME = st.one_of(
    st.binary(max_size=500),
    st.sampled_from(
        [
            b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n',
            b"From: \r\nSubject: =?utf-8?B?####?=\r\n\r\nbody",
            b"Content-Type: text/plain; charset=no-such-charset\r\nFrom: a@b.c\r\n\r\n\xff\xfe",
            b"From: a@b.c\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
            b"From: a@b.c\r\nContent-Type: multipart/alternative\r\n\r\nno boundary at all",
            b"\r\n\r\n",
            b"From: a@b.c\r\n" + b"X-Long: " + b"y" * 100_000 + b"\r\n\r\nhi",
        ]
    ),
)


@pytest.fixture
def ingest_app(common):
    return create_app(
        IngestSettings(
            **common,
            telegram_secret_token=TG,
            meta_app_secret=META,
            meta_verify_token="v",
            x_consumer_secret=X,
        )
    )


@pytest.mark.parametrize("channel", sorted(PATHS))
async def test_a_channel_adapter_refuses_or_ignores_broken_payloads(
    channel, ingest_app, ids, broker, topics
):
    statuses, accepted = set(), 0
    async with running(ingest_app) as client:

        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(body=mutated(channel))
        def fuzz(body):
            fuzz.bodies.append(body)

        fuzz.bodies = []
        fuzz()  # draws the bodies; the requests are async, so they are sent below
        for body in fuzz.bodies:
            answer = await client.post(
                PATHS[channel], content=body, headers=signed(channel, ids, body)
            )
            statuses.add(answer.status_code)
            assert answer.status_code < 500, (body[:200], answer.text)
            if answer.status_code >= 400:
                assert answer.headers["content-type"] == "application/problem+json"
            else:  # a reshaped payload may still be a valid message (a form has no count)
                accepted += answer.json().get("accepted", 1 if channel == "form" else 0)
        alive = await client.get("/healthz")
    assert alive.status_code == 200
    # Only what was answered as accepted reached the topic: nothing of what was refused.
    assert len(await read_topic(broker.bootstrap, topics.inbound)) == accepted
    print(f"\n{channel}: {len(fuzz.bodies)} payloads, answers {sorted(statuses)}, {accepted} valid")


async def test_the_email_parser_refuses_broken_mime(ingest_app, ids, broker, topics):
    bodies = []

    @settings(max_examples=40, deadline=None, database=None)
    @given(BROKEN_MIME)
    def draw(body):
        bodies.append(body)

    draw()
    async with running(ingest_app) as client:
        for body in bodies:
            answer = await client.post(
                "/v1/channels/email/inbound",
                content=body,
                headers={**ids.as_ingest, "content-type": "message/rfc822"},
            )
            assert answer.status_code < 500, (body[:200], answer.text)
    letters = [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.inbound)]
    # A broken message that still has a sender and some text may be routed; none may crash.
    assert all(letter["customer"]["id"] for letter in letters)
