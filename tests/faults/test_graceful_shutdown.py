"""SIGTERM while requests are in flight: each one gets its whole answer, and every message
answered 202 is on the topic; nothing is half-done. Stopping a whole desk as ``make run``
does: every message answered 202 is routed and folded by metrics before the services stop
(the broker keeps its topics only in memory)."""

import asyncio
import json

import asyncpg
import httpx
import pytest

from devtools.run import stop_desk
from tests.conftest import read_topic
from tests.processes import Services

pytestmark = pytest.mark.faults


async def test_ingest_finishes_in_flight_requests_on_sigterm(
    broker, database_url, topics, ids, tmp_path
):
    services = Services.for_test(
        broker, database_url, topics, [e.model_dump() for e in ids.entries()], tmp_path
    )
    outcomes: dict[str, int] = {}
    accepted: set[str] = set()
    try:
        url = services.start("ingest", SWITCHBOARD_DISPATCHER_ENABLED="false")
        async with httpx.AsyncClient(timeout=30) as http:

            async def post(n):
                body = {
                    "channel": "chat",
                    "channel_message_id": f"term-{n}",
                    "conversation_ref": f"v{n}",
                    "customer": {"id": f"v{n}"},
                    "text": "hello",
                }
                try:
                    answer = await http.post(f"{url}/v1/messages", json=body, headers=ids.as_ingest)
                except httpx.TransportError as exc:  # refused once the server stopped
                    outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                    return
                outcomes[str(answer.status_code)] = outcomes.get(str(answer.status_code), 0) + 1
                if answer.status_code == 202:
                    accepted.add(answer.json()["message_id"])

            async def stream():
                for n in range(0, 2000, 20):
                    await asyncio.gather(*(post(n + i) for i in range(20)))

            load = asyncio.create_task(stream())
            await asyncio.sleep(1.0)
            exit_code = await asyncio.to_thread(services.terminate, "ingest")
            await load
        published = {
            json.loads(r.value)["message_id"]
            for r in await read_topic(broker.bootstrap, topics.inbound)
        }
    finally:
        services.stop()
    print(f"\nSIGTERM under load: outcomes {outcomes}, exit {exit_code}")
    assert accepted and accepted <= published  # every 202 was on the broker
    assert not any(code.startswith("5") for code in outcomes)
    assert exit_code in (0, -15)


async def test_stopping_the_desk_routes_and_folds_every_accepted_message_first(
    broker, database_url, topics, ids, tmp_path
):
    services = Services.for_test(
        broker, database_url, topics, [e.model_dump() for e in ids.entries()], tmp_path
    )
    ns = topics.namespace
    groups = {
        "router": {f"router-{ns}": [topics.inbound], f"router-{ns}-deliveries": []},
        "metrics": {f"metrics-{ns}": [topics.conversation_events, topics.agent_events]},
    }
    accepted: set[str] = set()
    try:
        url = services.start("ingest", SWITCHBOARD_DISPATCHER_ENABLED="false")
        services.start("router")
        services.start("metrics")
        async with httpx.AsyncClient(timeout=30) as http:

            async def post(n):
                body = {
                    "channel": "chat",
                    "channel_message_id": f"stop-{n}",
                    "conversation_ref": f"s{n}",
                    "customer": {"id": f"s{n}"},
                    "text": "my withdrawal has not arrived",
                }
                try:
                    answer = await http.post(f"{url}/v1/messages", json=body, headers=ids.as_ingest)
                except httpx.TransportError:  # refused once ingest stopped
                    return
                if answer.status_code == 202:
                    accepted.add(answer.json()["message_id"])

            async def stream():
                for n in range(0, 3000, 30):
                    await asyncio.gather(*(post(n + i) for i in range(30)))

            load = asyncio.create_task(stream())
            await asyncio.sleep(1.5)
            left = await asyncio.to_thread(
                stop_desk, services.processes, broker.bootstrap, groups, timeout=120
            )
            await load
    finally:
        services.stop()
    db = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        routed = await db.fetchval(
            "SELECT count(*) FROM router.messages WHERE id = ANY($1::uuid[])",
            sorted(accepted),
        )
        folded = await db.fetchval("SELECT sum(customer_messages) FROM metrics.conversations")
    finally:
        await db.close()
    print(f"\nstopped with {len(accepted)} accepted: {routed} routed, {folded} folded, {left}")
    assert accepted and left and not any(left.values())
    assert routed == len(accepted) and folded == len(accepted)
