"""Two router processes on one topic and one database, hundreds of agents going on and off
line, and timing out when their frontend goes quiet, thousands of messages: afterwards every
invariant is checked from the database and the event stream."""

import asyncio
import json
import os
import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from devtools.run import launch, stop_all, wait_ready
from devtools.stack import free_port
from shared.auth import agent_scope, hash_key, new_key
from shared.db import make_engine
from shared.events import Channel, Customer, InboundMessage
from shared.ids import conversation_key_for, message_id_for
from tests.conftest import eventually, produce, read_topic
from tests.invariants import (
    given_to_two_agents,
    inbound_messages,
    load_mismatches,
    out_of_order,
    outbox_drained,
)

pytestmark = pytest.mark.e2e

AGENTS = 200
# Agents whose frontend long-polls or sends heartbeats; the others time out whenever online.
PRESENT = 40
PRESENCE_TIMEOUT_S = 2.0
# The least time the churn runs, however fast the messages are applied.
CHURN_S = 4 * PRESENCE_TIMEOUT_S
CONVERSATIONS = 1200
MESSAGES_PER_CONVERSATION = (1, 4)
CHANNELS = [Channel.CHAT, Channel.EMAIL, Channel.TELEGRAM]
TEXTS = [
    "my account was hacked",
    "withdrawal pending",
    "hello",
    "api key question",
    "a suggestion",
    "我的提现未到账",
    "계정 해킹",
]


@pytest.fixture
def agent_keys():
    return {f"stress-{i:03d}": new_key() for i in range(AGENTS)}


@pytest.fixture
def routers(broker, database_url, topics, ids, agent_keys, tmp_path: Path):
    entries = [e.model_dump() for e in ids.entries()] + [
        {"name": a, "sha256": hash_key(k), "scopes": [agent_scope(a)]}
        for a, k in agent_keys.items()
    ]
    ports = [free_port(), free_port()]
    processes = {}
    try:
        for n, port in enumerate(ports):
            env = {
                **os.environ,
                "SWITCHBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
                "SWITCHBOARD_DATABASE_URL": database_url,
                "SWITCHBOARD_API_KEYS": json.dumps(entries),
                "SWITCHBOARD_TOPICS__NAMESPACE": topics.namespace,
                "SWITCHBOARD_CONSUMER_GROUP": f"router-{topics.namespace}",
                "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "SWITCHBOARD_QUEUE_SWEEP_INTERVAL_S": "0.3",
                "SWITCHBOARD_PRESENCE_TIMEOUT_S": str(PRESENCE_TIMEOUT_S),
                "SWITCHBOARD_PRESENCE_FLUSH_S": "0.3",
                "SWITCHBOARD_PORT": str(port),
                "SWITCHBOARD_LOG_LEVEL": "WARNING",
            }
            processes[f"router{n}"] = launch("router", env, tmp_path / f"router{n}.log")
        for n, port in enumerate(ports):
            wait_ready(f"router{n}", port, processes[f"router{n}"])
        yield [f"http://127.0.0.1:{p}" for p in ports]
    finally:
        stop_all(processes)


async def presence_timeouts(broker, topics):
    """How many times an agent was set away because its frontend went quiet."""
    records = await read_topic(broker.bootstrap, topics.agent_events)
    events = [json.loads(r.value) for r in records]
    return sum(e.get("reason") == "presence_timeout" for e in events)


def workload(rng):
    """Messages of many conversations, each numbered within its conversation."""
    messages = []
    for c in range(CONVERSATIONS):
        channel = rng.choice(CHANNELS)
        ref = f"stress-{c}"
        for seq in range(rng.randint(*MESSAGES_PER_CONVERSATION)):
            mid = message_id_for(channel, f"{ref}-{seq}")
            messages.append(
                InboundMessage(
                    event_id=mid,
                    occurred_at=datetime.now(UTC),
                    message_id=mid,
                    channel=channel,
                    channel_message_id=f"{ref}-{seq}",
                    conversation_key=conversation_key_for(channel, ref),
                    customer=Customer(id=ref, language=rng.choice(["en", None])),
                    text=f"#{seq} {rng.choice(TEXTS)}",
                )
            )
    # Interleave conversations while keeping each conversation's own order.
    by_key = defaultdict(list)
    for m in messages:
        by_key[m.conversation_key].append(m)
    queues = list(by_key.values())
    out = []
    while queues:
        q = rng.choice(queues)
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
    return out


async def test_invariants_hold_with_two_routers_under_churn(
    routers, agent_keys, ids, broker, topics, database_url
):
    rng = random.Random(20261124)
    engine = make_engine(database_url, pool_size=3)
    violations: list[str] = []
    statuses = defaultdict(int)
    stop = asyncio.Event()

    async def query(sql):
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).all()

    async with httpx.AsyncClient(timeout=30) as http:
        for i, agent in enumerate(agent_keys):
            answer = await http.put(
                f"{routers[i % 2]}/v1/agents/{agent}",
                headers=ids.as_ops,
                json={
                    "name": agent,
                    "skills": {
                        s: rng.randint(1, 5)
                        for s in rng.sample(["security", "funds", "general", "api", "account"], 3)
                    },
                    "languages": rng.sample(["en", "zh", "ko"], rng.randint(1, 3)),
                    "capacity": {
                        "chat": rng.randint(1, 3),
                        "email": rng.randint(1, 5),
                        "telegram": rng.randint(0, 2),
                    },
                    "max_load": rng.choice([None, 3, 4]),
                },
            )
            assert answer.status_code == 200, answer.text

        def as_agent(agent):
            return {"Authorization": f"Bearer {agent_keys[agent]}"}

        async def churn():
            """Agents go online, away and offline at random, on either router."""
            while not stop.is_set():
                agent = rng.choice(list(agent_keys))
                status = rng.choice(["online", "online", "away", "offline"])
                answer = await http.put(
                    f"{rng.choice(routers)}/v1/agents/{agent}/status",
                    headers=as_agent(agent),
                    json={"status": status},
                )
                statuses[answer.status_code] += 1
                await asyncio.sleep(0.005)

        present = list(agent_keys)[:PRESENT]

        async def frontends():
            """The present agents' frontends poll or beat on either router, each well within
            the timeout; the other agents' frontends are silent."""
            while not stop.is_set():
                for agent in present:
                    router = rng.choice(routers)
                    if rng.random() < 0.5:
                        answer = await http.post(
                            f"{router}/v1/agents/{agent}/heartbeat", headers=as_agent(agent)
                        )
                    else:
                        answer = await http.get(
                            f"{router}/v1/agents/{agent}/assignments", headers=as_agent(agent)
                        )
                    statuses[answer.status_code] += 1
                await asyncio.sleep(PRESENCE_TIMEOUT_S / 4)

        async def desk():
            """Agents answer and resolve what they hold, on either router (naming themselves
            or not: the key says who acts)."""
            while not stop.is_set():
                rows = await query(
                    "SELECT id, agent_id FROM router.conversations "
                    "WHERE state = 'assigned' ORDER BY random() LIMIT 10"
                )
                for conv_id, agent in rows:
                    action = rng.choice(["replies", "resolve", "resolve"])
                    body = ({"agent_id": agent} if rng.random() < 0.5 else {}) | (
                        {"text": "ok"} if action == "replies" else {}
                    )
                    answer = await http.post(
                        f"{rng.choice(routers)}/v1/conversations/{conv_id}/{action}",
                        headers=as_agent(agent),
                        json=body,
                    )
                    statuses[answer.status_code] += 1
                await asyncio.sleep(0.01)

        async def monitor():
            """Snapshots of capacity while everything moves."""
            while not stop.is_set():
                over = await query(
                    """SELECT s.agent_id, s.channel FROM router.agent_slots s
                       WHERE s.load > s.capacity AND s.capacity > 0
                       UNION ALL
                       SELECT a.id, 'total' FROM router.agents a
                       WHERE a.max_load IS NOT NULL AND a.max_load < (
                           SELECT coalesce(sum(load), 0) FROM router.agent_slots s
                           WHERE s.agent_id = a.id)"""
                )
                violations.extend(f"over capacity: {r}" for r in over)
                await asyncio.sleep(0.05)

        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = [asyncio.create_task(t()) for t in (churn, frontends, desk, monitor)]
        messages = workload(rng)
        for start in range(0, len(messages), 200):
            batch = messages[start : start + 200]
            await produce(
                broker.bootstrap,
                topics.inbound,
                [(m.conversation_key, m.model_dump_json().encode()) for m in batch],
            )

        progress = {"at": 0.0}

        async def all_applied():
            applied = (
                await query("SELECT count(*) FROM router.messages WHERE direction = 'inbound'")
            )[0][0]
            now = asyncio.get_running_loop().time()
            if now - progress["at"] > 5:
                progress["at"] = now
                print(f"[stress] {applied}/{len(messages)} messages applied", flush=True)
            return applied == len(messages)

        await eventually(all_applied, timeout=120, what=f"all {len(messages)} messages applied")
        # The churn goes on for a few timeouts, so that agents time out while others come
        # and go, reply and resolve.
        await asyncio.sleep(max(0.0, started + CHURN_S - loop.time()))
        stop.set()
        await asyncio.gather(*tasks)

        # Settle: everyone online; the queue drains as far as skills and languages allow.
        for agent in agent_keys:
            await http.put(
                f"{routers[0]}/v1/agents/{agent}/status",
                headers=as_agent(agent),
                json={"status": "online"},
            )

        # Then every frontend goes quiet: each agent times out, and its unanswered work is
        # re-routed while others are still online to take it.
        async def nobody_online():
            online = await query("SELECT count(*) FROM router.agents WHERE status = 'online'")
            return online[0][0] == 0

        await eventually(nobody_online, timeout=60, what="every quiet agent timed out")

        await outbox_drained(engine)

    # Every message exactly once, in each conversation's own order.
    stored = await inbound_messages(engine)
    assert len(stored) == len(messages)
    assert out_of_order(stored) == []
    assert len({mid for mid, _, _ in stored}) == len({m.message_id for m in messages})

    # Capacity held throughout, and the counters agree with the conversations held.
    assert violations == []
    assert await load_mismatches(engine) == []
    offline_holding = await query(
        """SELECT c.id FROM router.conversations c JOIN router.agents a ON a.id = c.agent_id
           WHERE c.state = 'assigned' AND a.status <> 'online' AND c.first_response_at IS NULL"""
    )
    assert offline_holding == []
    await engine.dispose()

    # The event stream never gives one conversation to a second agent without taking it away.
    assert await given_to_two_agents(broker, topics) == []
    timed_out = await presence_timeouts(broker, topics)
    assert timed_out >= AGENTS, timed_out  # each agent, at least once after the settling
    assert statuses[500] == 0, dict(statuses)
    print(
        f"\nstress: {len(messages)} messages, {CONVERSATIONS} conversations, "
        f"{AGENTS} agents, {timed_out} presence timeouts, API answers {dict(statuses)}"
    )
