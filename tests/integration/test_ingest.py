import json
import uuid

import pytest

from devtools.stack import Broker
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import read_topic, running


def message(**overrides):
    body = {
        "channel": "telegram",
        "channel_message_id": uuid.uuid4().hex,
        "conversation_ref": "chat-42",
        "customer": {"id": "cust-1", "name": "Mei", "tier": "vip", "language": "zh"},
        "text": "我的提现还没到账",
        "sent_at": "2026-11-24T10:00:00Z",
    }
    body.update(overrides)
    return body


@pytest.fixture
def ingest_app(common):
    return create_app(IngestSettings(**common))


async def test_a_message_is_published_keyed_by_conversation_and_answered_202(
    ingest_app, ids, broker, topics
):
    async with running(ingest_app) as client:
        answer = await client.post("/v1/messages", json=message(), headers=ids.as_ingest)
    assert answer.status_code == 202
    body = answer.json()
    assert body["conversation_key"] == "telegram:chat-42"
    records = await read_topic(broker.bootstrap, topics.inbound)
    assert len(records) == 1
    event = json.loads(records[0].value)
    assert records[0].key == b"telegram:chat-42"
    assert event["message_id"] == body["message_id"] == event["event_id"]
    assert event["type"] == "message.inbound" and event["version"] == 1
    assert event["customer"]["tier"] == "vip" and event["sent_at"] == "2026-11-24T10:00:00Z"
    assert event["occurred_at"].endswith("Z") or "+00:00" in event["occurred_at"]


async def test_a_retried_delivery_gets_the_same_message_id(ingest_app, ids):
    first = message()
    async with running(ingest_app) as client:
        a = await client.post("/v1/messages", json=first, headers=ids.as_ingest)
        b = await client.post("/v1/messages", json=first, headers=ids.as_ingest)
    assert a.json()["message_id"] == b.json()["message_id"]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (message(channel="fax"), "channel"),
        (message(text=""), "text"),
        (message(text="   "), "text"),
        (message(customer={"id": 7}), "customer.id"),
        (message(channel_message_id=None), "channel_message_id"),
        (message(sent_at="yesterday"), "sent_at"),
        (message(sent_at="2026-11-24T10:00:00"), "sent_at"),
        (message(surprise=True), "surprise"),
        ({k: v for k, v in message().items() if k != "conversation_ref"}, "conversation_ref"),
    ],
)
async def test_bad_input_is_refused_with_a_problem_and_publishes_nothing(
    ingest_app, ids, broker, topics, body, complaint
):
    async with running(ingest_app) as client:
        answer = await client.post("/v1/messages", json=body, headers=ids.as_ingest)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert complaint in answer.json()["detail"]
    assert await read_topic(broker.bootstrap, topics.inbound) == []


async def test_malformed_json_and_oversize_bodies_are_refused(ingest_app, ids, broker, topics):
    async with running(ingest_app) as client:
        broken = await client.post(
            "/v1/messages",
            content=b"{not json",
            headers={**ids.as_ingest, "content-type": "application/json"},
        )
        huge = await client.post(
            "/v1/messages", json=message(text="x" * 300_000), headers=ids.as_ingest
        )
    assert broken.status_code == 422
    assert broken.headers["content-type"] == "application/problem+json"
    assert huge.status_code == 413
    assert huge.headers["content-type"] == "application/problem+json"
    assert await read_topic(broker.bootstrap, topics.inbound) == []


async def test_keys_are_required_and_scoped(ingest_app, ids, broker, topics):
    async with running(ingest_app) as client:
        missing = await client.post("/v1/messages", json=message())
        unknown = await client.post(
            "/v1/messages", json=message(), headers=ids.bearer("sb_not-a-key")
        )
        wrong_scope = await client.post("/v1/messages", json=message(), headers=ids.as_ops)
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert missing.status_code == unknown.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong_scope.status_code == 403
    assert wrong_scope.headers["content-type"] == "application/problem+json"
    assert health.status_code == 200 and ready.json()["checks"] == {"broker": "ok"}
    assert await read_topic(broker.bootstrap, topics.inbound) == []


async def test_an_unreachable_broker_gets_503_with_retry_after_never_a_2xx(common, ids):
    own = Broker().start()
    app = create_app(
        IngestSettings(**{**common, "kafka_bootstrap": own.bootstrap}, publish_timeout_s=2.0)
    )
    async with running(app) as client:
        own.stop()
        answer = await client.post("/v1/messages", json=message(), headers=ids.as_ingest)
        ready = await client.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.headers["content-type"] == "application/problem+json"
    assert ready.status_code == 503


async def test_a_body_not_declared_json_or_empty_is_refused_as_fastapi_would(
    ingest_app, ids, broker, topics
):
    async with running(ingest_app) as client:
        as_text = await client.post(
            "/v1/messages",
            content=json.dumps(message()).encode(),
            headers={**ids.as_ingest, "content-type": "text/plain"},
        )
        empty = await client.post(
            "/v1/messages",
            content=b"",
            headers={**ids.as_ingest, "content-type": "application/json"},
        )
        as_problem_json = await client.post(
            "/v1/messages",
            content=json.dumps(message()).encode(),
            headers={**ids.as_ingest, "content-type": "application/merge-patch+json"},
        )
    assert as_text.status_code == empty.status_code == 422
    assert as_text.headers["content-type"] == "application/problem+json"
    assert as_text.json()["errors"][0]["loc"] == ["body"]
    assert empty.json()["errors"][0]["type"] == "missing"
    assert as_problem_json.status_code == 202
    assert len(await read_topic(broker.bootstrap, topics.inbound)) == 1
