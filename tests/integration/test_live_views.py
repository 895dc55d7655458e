"""What ops see live is what the router holds: after any sequence of customers writing and
agents working (accepting, replying, resolving, transferring to an agent or a skill's queue,
correcting a classification, going away or offline with conversations, changing capacity) and
the router's sweeps (offers that time out, escalation, overflow, the queue), metrics'
``/v1/live/agents`` and ``/v1/live/queues`` equal the router's ``/v1/agents`` and
``/v1/queues`` (stuck conversations included), and its ``/metrics`` gauges equal both.

The router and metrics run in-process on the real broker and database. The router's sweeps run
when the sequence says (its periodic sweep is off), and each step waits until the router
applied it, so the router's state is settled when the views are compared; metrics is given
until a deadline to catch up. The examples share one desk: each starts from where the last
one left it (the comparison is of everything either side holds)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from services.metrics.app import create_app as create_metrics_app
from services.metrics.settings import MetricsSettings
from services.router.app import create_app as create_router_app
from services.router.settings import RouterSettings
from services.router.sweeps import escalate_due, expire_offers, overflow_due, sweep_queue
from shared.db import make_engine
from shared.events import Channel
from tests.conftest import running
from tests.integration.routerkit import inbound

RULES = """
version: 1
default: {priority: normal, skill: general}
vip_tiers: [vip]
# Anything waiting 0.2 s is escalated (at the next sweep): open to skill level 1.
escalation:
  first_response_target_s: {urgent: 0.4, high: 0.4, normal: 0.4, low: 0.4}
  at: 0.5
rules:
  - {id: security, priority: urgent, skill: security, min_level: 3, patterns: ['stolen']}
  - {id: funds, priority: high, skill: funds, min_level: 2, patterns: ['deposit']}
  - {id: trading, priority: high, skill: trading, patterns: ['liquidat']}
  - {id: feedback, priority: low, skill: general, patterns: ['feedback']}
# Waiting 0.2 s widens to English, 0.5 s (high, normal) to the general skill, 0.8 s to team l2:
# the last stage, after which a conversation nobody takes is stuck.
overflow:
  - {id: to-english, after_s: {urgent: 0.2, high: 0.2, normal: 0.2, low: 0.2}, languages: [en]}
  - {id: to-general, after_s: {high: 0.5, normal: 0.5}, skill: general}
  - {id: to-l2, after_s: {urgent: 0.8, high: 0.8, normal: 0.8, low: 0.8}, team: l2}
"""
OFFER_TIMEOUT_S = 0.2  # telegram assignments are offers to accept within this
TEXTS = [
    "hello, a question about my account",
    "my deposit is not there",
    "someone stolen my coins",
    "I was liquidated",
    "some feedback for you",
]
# Each customer writes on one channel, with one language.
CUSTOMERS = [(Channel.CHAT, "en"), (Channel.TELEGRAM, "en"), (Channel.CHAT, "ja")]
CUSTOMERS += [(Channel.TELEGRAM, "ja")]
AGENTS = [  # skills, languages, capacity, team
    ({"general": 2, "funds": 2, "security": 3}, ["en"], {"chat": 2, "telegram": 1}, "l1"),
    ({"general": 2, "security": 2, "funds": 1}, ["en", "ja"], {"chat": 1, "telegram": 2}, "l2"),
    ({"general": 1, "trading": 2, "funds": 2}, ["ja"], {"chat": 2}, None),
    ({"general": 2, "security": 1, "trading": 1}, ["en"], {"chat": 1, "telegram": 1}, "l1"),
]

agent = st.integers(0, len(AGENTS) - 1)
pick = st.integers(0, 3)  # which of the agent's conversations (modulo how many it holds)
write = st.tuples(st.just("write"), st.integers(0, len(CUSTOMERS) - 1), st.sampled_from(TEXTS))
resolve = st.tuples(st.just("resolve"), agent, pick)
ACTION = st.one_of(
    write,
    write,
    write,
    resolve,
    resolve,
    st.tuples(st.just("status"), agent, st.sampled_from(["online", "online", "away", "offline"])),
    st.tuples(st.just("capacity"), agent, st.integers(0, 3)),
    st.tuples(st.just("accept"), agent, pick),
    st.tuples(st.just("reply"), agent, pick),
    st.tuples(st.just("transfer"), agent, pick, agent),
    st.tuples(st.just("transfer"), agent, pick, st.sampled_from(["general", "funds", "trading"])),
    st.tuples(
        st.just("correct"),
        agent,
        pick,
        st.sampled_from([{"priority": "urgent"}, {"skill": "security"}, {"language": "ja"}]),
    ),
    st.tuples(st.just("sweep")),
)


@pytest.fixture
async def desk(common, ids, broker, topics, database_url, tmp_path):
    """The router and metrics in-process (clients), a producer of inbound messages and an
    engine on the database; the agents put and online."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    router_app = create_router_app(
        RouterSettings(
            **common | {"consumer_group": common["consumer_group"] + "-router"},
            rules_path=rules,
            queue_sweep_interval_s=3600,  # the sequence runs the sweeps
            offer_timeout_s={Channel.TELEGRAM: OFFER_TIMEOUT_S},
            max_missed_offers=2,
        )
    )
    metrics_app = create_metrics_app(
        MetricsSettings(
            **common | {"consumer_group": common["consumer_group"] + "-metrics"},
            sla_sweep_interval_s=3600,
            events_fetch_max_wait_ms=20,
        )
    )
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
    engine = make_engine(database_url, pool_size=2)
    await producer.start()
    try:
        async with running(router_app) as router, running(metrics_app) as metrics:
            yield {
                "router": router,
                "metrics": metrics,
                "uow": router_app.state.uow,
                "producer": producer,
                "db": engine,
                "topics": topics,
                "agents": ids.agent_ids[: len(AGENTS)],
            }
    finally:
        await producer.stop()
        await engine.dispose()


async def _rows(db: Any, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def _until(what: str, probe: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.01)


async def put_agent(desk: dict[str, Any], ids: Any, n: int, chat: int | None = None) -> None:
    skills, languages, capacity, team = AGENTS[n]
    body = {"name": f"agent {n}", "skills": skills, "languages": languages, "team": team}
    body["capacity"] = capacity | ({} if chat is None else {"chat": chat})
    agent_id = desk["agents"][n]
    answer = await desk["router"].put(f"/v1/agents/{agent_id}", headers=ids.as_ops, json=body)
    assert answer.status_code == 200, answer.text


async def write(desk: dict[str, Any], ref: str, customer: int, text_: str) -> None:
    """A customer writes; returns once the router applied the message."""
    channel, language = CUSTOMERS[customer]
    message = inbound(ref, text_, channel=channel, language=language)
    await desk["producer"].send_and_wait(
        desk["topics"].inbound,
        message.model_dump_json().encode(),
        key=message.conversation_key.encode(),
    )

    async def applied() -> bool:
        found = await _rows(
            desk["db"], "SELECT 1 FROM router.messages WHERE id = :id", id=message.message_id
        )
        return bool(found)

    await _until("the message applied by the router", applied)


async def held(desk: dict[str, Any], agent_id: str) -> list[uuid.UUID]:
    """The conversations an agent holds (offered or assigned), oldest first."""
    rows = await _rows(
        desk["db"],
        """SELECT id FROM router.conversations WHERE agent_id = :a AND state = 'assigned'
           ORDER BY assigned_at, id""",
        a=agent_id,
    )
    return [r.id for r in rows]


async def step(desk: dict[str, Any], ids: Any, run: str, action: tuple[Any, ...]) -> None:
    """One action of a sequence (a refused agent action is fine: 4xx, never 5xx)."""
    router = desk["router"]
    match action:
        case ("write", customer, text_):
            await write(desk, f"{run}-{customer}", customer, text_)
            return
        case ("status", n, status):
            agent_id = desk["agents"][n]
            answer = await router.put(
                f"/v1/agents/{agent_id}/status",
                headers=ids.as_agent(agent_id),
                json={"status": status},
            )
            assert answer.status_code == 200, answer.text
            return
        case ("capacity", n, chat):
            await put_agent(desk, ids, n, chat)
            return
        case ("sweep",):
            await asyncio.sleep(OFFER_TIMEOUT_S + 0.05)  # offers and waits come due
            for sweep in (expire_offers, escalate_due, overflow_due, sweep_queue):
                async with desk["uow"]() as ctx:
                    await sweep(ctx)
            return
    kind, n, which, *rest = action
    agent_id = desk["agents"][n]
    conversations = await held(desk, agent_id)
    if not conversations:
        return
    conversation = conversations[which % len(conversations)]
    body: dict[str, Any] = {"agent_id": agent_id}
    path = {"accept": "accept", "reply": "replies", "resolve": "resolve"}.get(kind, kind)
    if kind == "reply":
        body["text"] = "on it"
    elif kind == "transfer":
        (to,) = rest
        body["reason"] = "better placed"
        if isinstance(to, int):
            body["to_agent_id"] = desk["agents"][to]
        else:
            body["to_skill"] = to
    elif kind == "correct":
        path = "classification"
        body |= rest[0]
    answer = await router.post(
        f"/v1/conversations/{conversation}/{path}", headers=ids.as_agent(agent_id), json=body
    )
    assert answer.status_code < 500, answer.text
    assert answer.status_code < 300 or answer.status_code in (400, 404, 409), answer.text


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


async def disagreement(desk: dict[str, Any], ids: Any) -> str | None:
    """How metrics' live views and gauges differ from the router's views (None: they agree)."""
    router, metrics = desk["router"], desk["metrics"]
    before_router = datetime.now(UTC)
    router_queues = (await router.get("/v1/queues?limit=1000", headers=ids.as_ops)).json()
    before_metrics = datetime.now(UTC)
    live_queues = (await metrics.get("/v1/live/queues", headers=ids.as_ops)).json()
    after = datetime.now(UTC)
    router_agents = (await router.get("/v1/agents?limit=1000", headers=ids.as_ops)).json()
    live_agents = (await metrics.get("/v1/live/agents?limit=1000", headers=ids.as_ops)).json()
    scrape = (await metrics.get("/metrics", headers=ids.as_ops)).text
    gauges: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            gauges.setdefault(sample.name, {})[tuple(sample.labels.values())] = sample.value

    # Agents: status, team, capacity and load per channel (channels at 0 left out).
    def agent(a: dict[str, Any], key: str) -> tuple[Any, ...]:
        return (a[key], a["status"], a["team"], _nonzero(a["capacity"]), _nonzero(a["load"]))

    expected_agents = sorted(agent(a, "id") for a in router_agents)
    got_agents = sorted(agent(a, "agent_id") for a in live_agents)
    if got_agents != expected_agents:
        return f"agents: router {expected_agents} != metrics {got_agents}"
    # Queues: per (skill, language) depth and priority mix; the oldest within the requests.
    expected_queues = {
        (q["skill"], q["language"]): (q["depth"], _nonzero(q["priorities"])) for q in router_queues
    }
    got: dict[tuple[str, str], tuple[int, Counter[str]]] = {}
    for q in live_queues:
        depth, priorities = got.get((q["skill"], q["language"]), (0, Counter()))
        priorities[q["priority"]] += q["depth"]
        got[q["skill"], q["language"]] = (depth + q["depth"], priorities)
    got_queues = {k: (depth, dict(p)) for k, (depth, p) in got.items()}
    if got_queues != expected_queues:
        return f"queues: router {expected_queues} != metrics {got_queues}"
    # Stuck (waiting after the last overflow stage), per (skill, language).
    expected_stuck = {(q["skill"], q["language"]): q["stuck"] for q in router_queues if q["stuck"]}
    got_stuck: Counter[tuple[str, str]] = Counter()
    for q in live_queues:
        got_stuck[q["skill"], q["language"]] += q["stuck"]
    if +got_stuck != expected_stuck:
        return f"stuck: router {expected_stuck} != metrics {dict(+got_stuck)}"
    for q in router_queues:
        # The oldest conversation's queue age as an instant: the router's and metrics' "now"
        # each fall within their request.
        oldest = max(
            m["oldest_wait_s"]
            for m in live_queues
            if (m["skill"], m["language"]) == (q["skill"], q["language"])
        )
        router_oldest = before_router.timestamp() - q["oldest_wait_s"]
        metrics_oldest = before_metrics.timestamp() - oldest
        slack = (after - before_router).total_seconds() + 0.002
        if abs(router_oldest - metrics_oldest) > slack:
            return f"oldest in {q['skill']}/{q['language']}: {router_oldest} != {metrics_oldest}"
    # The channel split, which the router's API does not show: from its table.
    by_channel = {
        (r.channel, r.priority): r.n
        for r in await _rows(
            desk["db"],
            """SELECT channel, priority, count(*) AS n FROM router.conversations
               WHERE state = 'queued' GROUP BY 1, 2""",
        )
    }
    depth_gauge = {k: int(v) for k, v in gauges.get("switchboard_queue_depth", {}).items()}
    if depth_gauge != by_channel:
        return f"switchboard_queue_depth {depth_gauge} != router {by_channel}"
    # Agent gauges: agents by status, load and capacity of online agents per channel.
    online = [a for a in router_agents if a["status"] == "online"]
    load: Counter[str] = Counter()
    capacity: Counter[str] = Counter()
    for a in online:
        load.update(a["load"])
        capacity.update(a["capacity"])
    statuses = Counter({"online": 0, "away": 0, "offline": 0})
    statuses.update(a["status"] for a in router_agents)
    for name, expected in (
        ("switchboard_agent_load", _nonzero(dict(load))),
        ("switchboard_agent_capacity", _nonzero(dict(capacity))),
        ("switchboard_agents", dict(statuses)),
    ):
        found = {k[0]: int(v) for k, v in gauges.get(name, {}).items()}
        if (found if name == "switchboard_agents" else _nonzero(found)) != expected:
            return f"{name}: {found} != router {expected}"
    return None


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(ACTION, min_size=4, max_size=25))
async def test_live_views_and_gauges_equal_the_routers_state_after_any_routing(desk, ids, actions):
    run = uuid.uuid4().hex[:8]  # each example's customers are new
    for n in range(len(AGENTS)):
        await put_agent(desk, ids, n)
        await step(desk, ids, run, ("status", n, "online"))
    for action in actions:
        await step(desk, ids, run, action)
    last: list[str | None] = [None]

    async def agree() -> bool:
        last[0] = await disagreement(desk, ids)
        return last[0] is None

    try:
        await _until("the live views equal to the router's", agree, timeout=20)
    except AssertionError:
        raise AssertionError(f"after {actions}: {last[0]}") from None
