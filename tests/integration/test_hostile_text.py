"""Text PostgreSQL cannot store is refused at the door, with nothing published; customers'
text is data in logs too: one JSON object per line, whatever it holds."""

import json
import logging

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.logs import JsonFormatter
from tests.conftest import read_topic, running


def message(text):
    return {
        "channel": "chat",
        "channel_message_id": "m-1",
        "conversation_ref": "visitor-1",
        "customer": {"id": "visitor-1"},
        "text": text,
    }


async def test_nul_and_lone_surrogates_are_refused_and_nothing_is_published(
    common, ids, broker, topics, caplog
):
    caplog.set_level(logging.DEBUG)
    app = create_app(IngestSettings(**common))
    async with running(app) as client:
        nul = await client.post("/v1/messages", json=message("hi\x00there"), headers=ids.as_ingest)
        surrogate = await client.post(
            "/v1/messages",
            content=b'{"channel": "chat", "channel_message_id": "m-2", "conversation_ref": "v",'
            b' "customer": {"id": "v"}, "text": "\\ud83d alone"}',
            headers={**ids.as_ingest, "content-type": "application/json"},
        )
        query = await client.get("/metrics/service?x=%00", headers=ids.as_ops)
        fine = await client.post("/v1/messages", json=message("你好 👋"), headers=ids.as_ingest)
    assert nul.status_code == 422 and "body.text contains a NUL" in nul.json()["detail"]
    assert nul.headers["content-type"] == "application/problem+json"
    assert surrogate.status_code == 422 and "surrogate" in surrogate.json()["detail"]
    assert query.status_code == 422
    assert fine.status_code == 202
    assert len(await read_topic(broker.bootstrap, topics.inbound)) == 1
    assert ids.ingest not in caplog.text and ids.ops not in caplog.text  # keys never logged


def test_a_log_line_stays_one_line_whatever_the_customer_wrote():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "received", None, None)
    record.text = 'line one\n{"level": "error", "msg": "forged"}\r\n<script>'
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\r" not in line
    assert json.loads(line)["text"] == record.text
