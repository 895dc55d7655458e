"""A router killed with SIGKILL, several times, while messages pour in through ingest and a
second router keeps working: nothing accepted is lost or applied twice, order holds, no agent
goes over capacity and no conversation is given to two agents."""

import asyncio
import random
import uuid
from collections import defaultdict

import httpx
import pytest
from sqlalchemy import text

from shared.auth import agent_scope, hash_key, new_key
from shared.db import make_engine
from tests.conftest import eventually
from tests.invariants import (
    given_to_two_agents,
    inbound_messages,
    load_mismatches,
    out_of_order,
    outbox_drained,
)
from tests.processes import Services

pytestmark = pytest.mark.faults

AGENTS = 30
CONVERSATIONS = 400
KILLS = 4


@pytest.fixture
def agent_keys():
    return {f"fault-{i:02d}": new_key() for i in range(AGENTS)}


@pytest.fixture
def desk(broker, database_url, topics, ids, agent_keys, tmp_path):
    keys = [e.model_dump() for e in ids.entries()] + [
        {"name": a, "sha256": hash_key(k), "scopes": [agent_scope(a)]}
        for a, k in agent_keys.items()
    ]
    services = Services.for_test(broker, database_url, topics, keys, tmp_path)
    try:
        services.start("ingest", SWITCHBOARD_DISPATCHER_ENABLED="false")
        for name in ("router0", "router1"):
            services.start(name, "router", SWITCHBOARD_QUEUE_SWEEP_INTERVAL_S="0.3")
        yield services
    finally:
        services.stop()


async def test_nothing_is_lost_or_doubled_when_a_router_is_killed_again_and_again(
    desk, ids, agent_keys, broker, topics, database_url
):
    rng = random.Random(6)
    engine = make_engine(database_url, pool_size=3)
    steady = desk.url("router1")  # never killed: agents and the desk talk to it
    violations, statuses, accepted = [], defaultdict(int), {}
    stop = asyncio.Event()

    async def query(sql):
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).all()

    async with httpx.AsyncClient(timeout=30) as http:
        for agent, key in agent_keys.items():
            profile = {
                "name": agent,
                "skills": dict.fromkeys(("security", "funds", "general", "api", "account"), 3),
                "languages": ["en", "zh", "ko"],
                "capacity": {"chat": 3, "email": 5, "telegram": 2},
            }
            assert (
                await http.put(f"{steady}/v1/agents/{agent}", headers=ids.as_ops, json=profile)
            ).status_code == 200
            await http.put(
                f"{steady}/v1/agents/{agent}/status",
                headers={"Authorization": f"Bearer {key}"},
                json={"status": "online"},
            )

        async def post(ref, channel, seq):
            body = {
                "channel": channel,
                "channel_message_id": f"{ref}-{seq}",
                "conversation_ref": ref,
                "customer": {"id": ref},
                "text": f"#{seq} {rng.choice(['account hacked', 'withdrawal late', 'hello'])}",
            }
            answer = await http.post(
                f"{desk.url('ingest')}/v1/messages", json=body, headers=ids.as_ingest
            )
            statuses[f"ingest {answer.status_code}"] += 1
            if answer.is_success:
                accepted[answer.json()["message_id"]] = ref

        async def customers(n):
            """One conversation after another, each message in order."""
            for c in range(n, CONVERSATIONS, 4):
                ref, channel = (
                    f"c{c}-{uuid.uuid4().hex[:6]}",
                    rng.choice(["chat", "email", "telegram"]),
                )
                for seq in range(rng.randint(1, 4)):
                    await post(ref, channel, seq)
                    await asyncio.sleep(0.04)  # a steady stream, so the kills land mid-stream

        async def agents_resolve():
            while not stop.is_set():
                rows = await query(
                    "SELECT id, agent_id FROM router.conversations "
                    "WHERE state = 'assigned' ORDER BY random() LIMIT 5"
                )
                for conv_id, agent in rows:
                    answer = await http.post(
                        f"{steady}/v1/conversations/{conv_id}/resolve",
                        headers={"Authorization": f"Bearer {agent_keys[agent]}"},
                        json={"agent_id": agent},
                    )
                    statuses[f"router {answer.status_code}"] += 1
                await asyncio.sleep(0.05)

        async def monitor():
            while not stop.is_set():
                over = await query(
                    "SELECT agent_id, channel FROM router.agent_slots WHERE load > capacity"
                )
                violations.extend(f"over capacity: {r}" for r in over)
                await asyncio.sleep(0.05)

        kills = []

        async def killer():
            for _ in range(KILLS):
                await asyncio.sleep(0.5)
                (applied_then,) = (
                    await query("SELECT count(*) FROM router.messages WHERE direction = 'inbound'")
                )[0]
                kills.append(f"{applied_then}/{len(accepted)}")
                desk.kill("router0")
                await asyncio.sleep(0.5)
                await asyncio.to_thread(desk.restart, "router0")

        background = [asyncio.create_task(t()) for t in (agents_resolve, monitor)]
        await asyncio.gather(killer(), *(customers(n) for n in range(4)))

        async def all_applied():
            (n,) = (
                await query("SELECT count(*) FROM router.messages WHERE direction = 'inbound'")
            )[0]
            return n >= len(accepted)

        await eventually(all_applied, timeout=120, what="every accepted message applied")
        stop.set()
        await asyncio.gather(*background)

        await outbox_drained(engine)

    stored = await inbound_messages(engine)
    applied = [mid for mid, _, _ in stored]
    lost = set(accepted) - set(applied)
    duplicated = len(applied) - len(set(applied))
    mismatched = await load_mismatches(engine)
    await engine.dispose()
    doubled = await given_to_two_agents(broker, topics)

    sent = sum(v for k, v in statuses.items() if k.startswith("ingest"))
    print(
        f"\nrouter killed {KILLS}x: sent {sent}, "
        f"accepted {len(accepted)}, applied {len(set(applied))}, lost {len(lost)}, "
        f"duplicated {duplicated}; applied/accepted at each kill {kills}; "
        f"answers {dict(statuses)}"
    )
    assert lost == set() and duplicated == 0
    assert set(applied) <= set(accepted)
    assert out_of_order(stored) == []
    assert violations == [] and mismatched == [] and doubled == []
    assert not any(k.endswith(" 500") for k in statuses), dict(statuses)
