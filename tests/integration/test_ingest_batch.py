"""POST /v1/messages/batch against the real ingest app and broker: a result per item, the
valid items published once, the invalid ones refused alone, idempotent as single posts."""

import json
import uuid
from collections import Counter

import pytest

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import read_topic, running


def message(**overrides):
    body = {
        "channel": "chat",
        "channel_message_id": uuid.uuid4().hex,
        "conversation_ref": f"visitor-{uuid.uuid4().hex[:8]}",
        "customer": {"id": f"cust-{uuid.uuid4().hex[:8]}", "language": "en"},
        "text": "my withdrawal is pending for hours",
    }
    body.update(overrides)
    return body


@pytest.fixture
def ingest_app(common):
    return create_app(IngestSettings(**common))


async def published(broker, topics):
    records = await read_topic(broker.bootstrap, topics.inbound)
    return Counter(json.loads(r.value)["message_id"] for r in records)


async def test_valid_items_are_published_once_and_invalid_ones_refused_with_index_and_reason(
    ingest_app, ids, broker, topics
):
    first, second = message(), message(text="我的提现还没到账")
    items = [
        first,
        message(channel="fax"),
        second,
        {k: v for k, v in message().items() if k != "text"},
        first,  # the same message again within the batch
    ]
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/messages/batch", json={"messages": items}, headers=ids.as_ingest
        )
    assert answer.status_code == 200
    body = answer.json()
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == [
        "accepted",
        "refused",
        "accepted",
        "refused",
        "duplicate",
    ]
    assert "channel" in results[1]["reason"] and "text" in results[3]["reason"]
    assert results[1]["message_id"] is None and results[3]["message_id"] is None
    assert results[4]["message_id"] == results[0]["message_id"]
    assert results[0]["conversation_key"] == f"chat:{first['conversation_ref']}"
    assert (body["accepted"], body["duplicates"], body["refused"]) == (2, 1, 2)
    assert await published(broker, topics) == {
        results[0]["message_id"]: 1,
        results[2]["message_id"]: 1,
    }


async def test_a_retried_batch_yields_the_same_message_ids_as_single_posts_do(
    ingest_app, ids, broker, topics
):
    items = [message(), message(), message()]
    async with running(ingest_app) as client:
        a = await client.post("/v1/messages/batch", json={"messages": items}, headers=ids.as_ingest)
        b = await client.post("/v1/messages/batch", json={"messages": items}, headers=ids.as_ingest)
        single = await client.post("/v1/messages", json=items[1], headers=ids.as_ingest)
    first = [r["message_id"] for r in a.json()["results"]]
    assert first == [r["message_id"] for r in b.json()["results"]]
    assert single.json()["message_id"] == first[1]
    # At least once: each retry is published again, and consumers deduplicate on the id.
    assert set(await published(broker, topics)) == set(first)


async def test_a_batch_over_the_item_limit_is_refused_whole_and_publishes_nothing(
    common, ids, broker, topics
):
    app = create_app(IngestSettings(**common, batch_max_items=3))
    async with running(app) as client:
        answer = await client.post(
            "/v1/messages/batch",
            json={"messages": [message() for _ in range(4)]},
            headers=ids.as_ingest,
        )
        empty = await client.post(
            "/v1/messages/batch", json={"messages": []}, headers=ids.as_ingest
        )
        not_a_batch = await client.post("/v1/messages/batch", json=message(), headers=ids.as_ingest)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert "at most 3" in answer.json()["detail"]
    assert empty.status_code == not_a_batch.status_code == 422
    assert await published(broker, topics) == {}


async def test_nul_in_one_item_refuses_the_whole_body_as_every_route_does(
    ingest_app, ids, broker, topics
):
    items = [message(), message(text="hello\u0000world"), message()]
    async with running(ingest_app) as client:
        answer = await client.post(
            "/v1/messages/batch", json={"messages": items}, headers=ids.as_ingest
        )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert "messages[1].text" in answer.json()["detail"]
    assert await published(broker, topics) == {}


async def test_a_batch_has_a_larger_body_limit_than_single_messages(common, ids, broker, topics):
    app = create_app(IngestSettings(**common, batch_max_body_bytes=600_000))
    big = [message(text="x" * 15_000) for _ in range(20)]  # about 300 KB: over 256 KiB
    async with running(app) as client:
        accepted = await client.post(
            "/v1/messages/batch", json={"messages": big}, headers=ids.as_ingest
        )
        too_big = await client.post(
            "/v1/messages/batch", json={"messages": big * 2}, headers=ids.as_ingest
        )
        single = await client.post(
            "/v1/messages", json=message(text="x" * 300_000), headers=ids.as_ingest
        )
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 20
    assert too_big.status_code == single.status_code == 413
    assert too_big.headers["content-type"] == "application/problem+json"
    assert too_big.json()["title"] == single.json()["title"] == "Content Too Large"
    assert sum((await published(broker, topics)).values()) == 20


async def test_a_customer_over_its_rate_is_rate_limited_per_item_and_others_go_on(
    common, ids, broker, topics
):
    app = create_app(IngestSettings(**common, rate_limit_per_customer_burst=2))
    flooding = {"id": "cust-flood", "language": "en"}
    flood = [message(customer=flooding) for _ in range(3)]
    items = [*flood, flood[2], message()]  # the repeat of a rate-limited item shares its fate
    async with running(app) as client:
        answer = await client.post(
            "/v1/messages/batch", json={"messages": items}, headers=ids.as_ingest
        )
    results = answer.json()["results"]
    assert answer.status_code == 200
    assert [r["status"] for r in results] == [
        "accepted",
        "accepted",
        "rate_limited",
        "rate_limited",
        "accepted",
    ]
    assert "faster than" in results[2]["reason"] and results[3]["reason"] == results[2]["reason"]
    assert set(await published(broker, topics)) == {
        r["message_id"] for r in results if r["status"] == "accepted"
    }


async def test_a_batch_needs_the_ingest_scope(ingest_app, ids, broker, topics):
    async with running(ingest_app) as client:
        missing = await client.post("/v1/messages/batch", json={"messages": [message()]})
        wrong = await client.post(
            "/v1/messages/batch", json={"messages": [message()]}, headers=ids.as_ops
        )
    assert missing.status_code == 401 and wrong.status_code == 403
    assert await published(broker, topics) == {}
