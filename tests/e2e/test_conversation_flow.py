"""One support desk, end to end: the three services as separate processes on the real broker
and database, driven only over HTTP."""

import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.run import launch, stop_all, wait_ready
from devtools.stack import free_port
from tests.conftest import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def desk(broker, database_url, topics, ids, tmp_path: Path):
    """Start ingest, router and metrics; yield their base URLs; stop them (SIGTERM)."""
    ports = {name: free_port() for name in ("ingest", "router", "metrics")}
    keys = [e.model_dump() for e in ids.entries()]
    processes = {}
    try:
        for name, port in ports.items():
            env = {
                **os.environ,
                "SWITCHBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
                "SWITCHBOARD_DATABASE_URL": database_url,
                "SWITCHBOARD_API_KEYS": json.dumps(keys),
                "SWITCHBOARD_TOPICS__NAMESPACE": topics.namespace,
                "SWITCHBOARD_CONSUMER_GROUP": f"{name}-{topics.namespace}",
                "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": "3000",
                "SWITCHBOARD_PORT": str(port),
            }
            processes[name] = launch(name, env, tmp_path / f"{name}.log")
        for name, port in ports.items():
            wait_ready(name, port, processes[name])
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        stop_all(processes)
        for name in ports:
            log = tmp_path / f"{name}.log"
            if log.exists():
                print(f"--- {name} log (tail)\n" + "\n".join(log.read_text().splitlines()[-15:]))


async def test_a_conversation_from_message_to_metrics(desk, ids):
    alice, bao, chloe = ids.agent_ids[:3]
    async with httpx.AsyncClient(timeout=30) as http:
        for agent, languages in ((alice, ["en", "zh"]), (bao, ["en"]), (chloe, ["ko"])):
            answer = await http.put(
                f"{desk['router']}/v1/agents/{agent}",
                headers=ids.as_ops,
                json={
                    "name": agent,
                    "skills": {"general": 2, "funds": 3, "security": 1},
                    "languages": languages,
                    "capacity": {"chat": 2, "telegram": 2},
                },
            )
            assert answer.status_code == 200, answer.text
            answer = await http.put(
                f"{desk['router']}/v1/agents/{agent}/status",
                headers=ids.as_agent(agent),
                json={"status": "online"},
            )
            assert answer.status_code == 200

        async def post(ref, text, channel="chat"):
            answer = await http.post(
                f"{desk['ingest']}/v1/messages",
                headers=ids.as_ingest,
                json={
                    "channel": channel,
                    "channel_message_id": uuid.uuid4().hex,
                    "conversation_ref": ref,
                    "customer": {"id": f"cust-{ref}"},
                    "text": text,
                },
            )
            assert answer.status_code == 202, answer.text
            return answer.json()

        async def poll(agent, since=None, wait=15):
            params = {"wait": wait} | ({"since": since} if since is not None else {})
            answer = await http.get(
                f"{desk['router']}/v1/agents/{agent}/assignments",
                params=params,
                headers=ids.as_agent(agent),
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

        # The first conversation goes to one English speaker; the second to the other, who is
        # now the least loaded; the Korean-only agent gets neither.
        await post("c1", "Hello, my withdrawal is pending since this morning")
        first = await eventually(lambda: _holder(poll, (alice, bao)), what="first assignment")
        holder, first_conv = first
        other = bao if holder == alice else alice
        await post("c2", "What are your trading fees?")
        second = await poll(other)
        assert [c["conversation_key"] for c in second["conversations"]] == ["chat:c2"]
        assert (await poll(chloe, wait=0))["conversations"] == []
        assert first_conv["classification"]["priority"] == "high"
        assert first_conv["classification"]["skill"] == "funds"
        assert "funds.not-credited" in first_conv["classification"]["rules_fired"]

        # Reply and resolve through the agent API.
        conv_id = first_conv["id"]
        reply = await http.post(
            f"{desk['router']}/v1/conversations/{conv_id}/replies",
            headers=ids.as_agent(holder),
            json={"agent_id": holder, "text": "Looking into it now."},
        )
        assert reply.status_code == 201
        resolved = await http.post(
            f"{desk['router']}/v1/conversations/{conv_id}/resolve",
            headers=ids.as_agent(holder),
            json={"agent_id": holder},
        )
        assert resolved.json()["state"] == "resolved"

        async def summarized():
            answer = await http.get(f"{desk['metrics']}/v1/metrics/summary", headers=ids.as_ops)
            body = answer.json()
            return body if body["resolution_s"]["count"] == 1 else None

        summary = await eventually(summarized, what="metrics summary of the resolved one")
        assert summary["conversations"] == 2
        assert summary["first_response_s"]["count"] == 1
        assert summary["first_response_s"]["p50"] > 0
        assert summary["resolution_s"]["p99"] >= summary["first_response_s"]["p99"]
        assert summary["queue_wait_s"]["count"] == 2

        scrape = await http.get(f"{desk['metrics']}/metrics", headers=ids.as_ops)
        parsed = {m.name: m for m in text_string_to_metric_families(scrape.text)}
        frt = parsed["switchboard_first_response_seconds"]
        assert [s.value for s in frt.samples if s.name.endswith("_count")] == [1]
        assert {s.labels["priority"] for s in frt.samples} == {"high"}
        opened = parsed["switchboard_conversations_opened"]
        assert sum(s.value for s in opened.samples if s.name.endswith("_total")) == 2


async def _holder(poll, agents):
    for agent in agents:
        got = await poll(agent, wait=0.5)
        if got["conversations"]:
            return agent, got["conversations"][0]
    return None
