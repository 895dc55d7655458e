"""Rate limits: a flooding customer or key is answered 429 with Retry-After, others are not,
and nothing over the limit is published."""

import uuid

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import read_topic, running


def message(customer, channel="chat"):
    return {
        "channel": channel,
        "channel_message_id": uuid.uuid4().hex,
        "conversation_ref": f"visitor-{customer}",
        "customer": {"id": customer},
        "text": "where is my withdrawal?",
    }


async def test_a_flooding_visitor_is_slowed_and_other_customers_are_not(
    common, ids, broker, topics
):
    app = create_app(
        IngestSettings(
            **common, rate_limit_per_customer_per_s=0.01, rate_limit_per_customer_burst=3
        )
    )
    async with running(app) as client:
        flood = [
            await client.post("/v1/messages", json=message("bot"), headers=ids.as_ingest)
            for _ in range(6)
        ]
        other = await client.post("/v1/messages", json=message("mei"), headers=ids.as_ingest)
        same_id_elsewhere = await client.post(
            "/v1/messages", json=message("bot", channel="telegram"), headers=ids.as_ingest
        )
    assert [a.status_code for a in flood] == [202, 202, 202, 429, 429, 429]
    refused = flood[3]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert "'bot'" in refused.json()["detail"] and "chat" in refused.json()["detail"]
    assert other.status_code == 202 and same_id_elsewhere.status_code == 202
    published = await read_topic(broker.bootstrap, topics.inbound)
    assert len(published) == 5  # three of the flood, and the two others


async def test_a_key_over_its_rate_limit_gets_429_and_other_keys_do_not(common, ids):
    app = create_app(
        IngestSettings(**common, rate_limit_per_key_per_s=0.01, rate_limit_per_key_burst=4)
    )
    async with running(app) as client:
        answers = [
            (await client.get("/metrics/service", headers=ids.as_ops)).status_code for _ in range(6)
        ]
        agent = await client.get("/metrics/service", headers=ids.as_agent(ids.agent_ids[0]))
    assert answers == [200, 200, 200, 200, 429, 429]
    assert agent.status_code == 403  # its own bucket: refused for its scope, not its rate
