"""The metrics service through its real consumer, broker and database."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.events import (
    AgentReplied,
    AgentStatus,
    AgentStatusChanged,
    Assigned,
    Channel,
    Classified,
    ConversationOpened,
    CustomerTier,
    MessageReceived,
    Priority,
    Resolved,
    Skill,
)
from shared.ids import derived_id
from tests.conftest import eventually, produce, read_topic, running

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def conversation(
    frt_s: float,
    resolution_s: float,
    *,
    channel=Channel.CHAT,
    agent="ag-1",
    priority=Priority.URGENT,
):
    cid = uuid.uuid4()
    mid = uuid.uuid4()
    common = {"conversation_id": cid, "channel": channel}

    def at(seconds):
        return T0 + timedelta(seconds=seconds)

    return [
        ConversationOpened(
            event_id=derived_id("o", cid),
            occurred_at=at(0),
            conversation_key=f"{channel.value}:{cid}",
            customer_id="c",
            customer_tier=CustomerTier.STANDARD,
            **common,
        ),
        MessageReceived(event_id=derived_id("m", cid), occurred_at=at(0), message_id=mid, **common),
        Classified(
            event_id=derived_id("c", cid),
            occurred_at=at(0.01),
            priority=priority,
            skill=Skill.SECURITY,
            language="en",
            rules_fired=["x"],
            **common,
        ),
        Assigned(event_id=derived_id("a", cid), occurred_at=at(0.02), agent_id=agent, **common),
        AgentReplied(
            event_id=derived_id("r", cid),
            occurred_at=at(frt_s),
            agent_id=agent,
            message_id=uuid.uuid4(),
            **common,
        ),
        Resolved(
            event_id=derived_id("d", cid), occurred_at=at(resolution_s), agent_id=agent, **common
        ),
    ]


async def publish(broker, topics, events):
    await produce(
        broker.bootstrap,
        topics.conversation_events,
        [(str(e.conversation_id), e.model_dump_json().encode()) for e in events],
    )


@pytest.fixture
def metrics_app(common):
    return create_app(MetricsSettings(**common))


async def summary(client, ids, **params):
    answer = await client.get("/v1/metrics/summary", params=params, headers=ids.as_ops)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_figures_are_exact_and_a_replay_changes_nothing(metrics_app, ids, broker, topics):
    events = [e for frt in (10, 20, 30, 40) for e in conversation(frt, frt * 10)]
    events += conversation(5, 50, channel=Channel.EMAIL, agent="ag-2", priority=Priority.LOW)
    async with running(metrics_app) as client:
        await publish(broker, topics, events)

        async def all_in():
            s = await summary(client, ids)
            return s if s["resolution_s"]["count"] == 5 else None

        everything = await eventually(all_in, what="five resolved conversations")
        assert everything["first_response_s"] == {
            "count": 5,
            "mean": 21.0,
            "min": 5.0,
            "max": 40.0,
            "p50": 20.0,
            "p90": 40.0,
            "p95": 40.0,
            "p99": 40.0,
        }
        chat = await summary(client, ids, channel="chat", agent_id="ag-1")
        assert chat["conversations"] == 4 and chat["resolution_s"]["p50"] == 200.0
        assert (await summary(client, ids, priority="low"))["first_response_s"]["max"] == 5.0
        window = await summary(client, ids, **{"from": (T0 + timedelta(hours=1)).isoformat()})
        assert window["conversations"] == 0

        await publish(broker, topics, list(reversed(events)))  # replayed, out of order

        async def replay_consumed():
            return metrics_app.state.consume_loop.applied >= 2 * len(events)

        await eventually(replay_consumed, what="the replay consumed")
        assert await summary(client, ids) == everything

        scrape = await client.get("/metrics", headers=ids.as_ops)
    assert scrape.status_code == 200
    parsed = {m.name: m for m in text_string_to_metric_families(scrape.text)}
    frt = parsed["switchboard_first_response_seconds"]
    count = {s.labels["channel"]: s.value for s in frt.samples if s.name.endswith("_count")}
    assert count == {"chat": 4, "email": 1}


async def test_unknown_event_types_are_skipped_and_garbage_is_dead_lettered(
    metrics_app, ids, broker, topics
):
    future = {"type": "conversation.teleported", "event_id": str(uuid.uuid4())}
    async with running(metrics_app) as client:
        await produce(
            broker.bootstrap,
            topics.conversation_events,
            [
                ("k", b"\xff\xfe not json"),
                ("k", str(future).replace("'", '"').encode()),
                ("k", b'{"type": "conversation.resolved", "event_id": "nope"}'),
            ],
        )
        await publish(broker, topics, conversation(1, 2))

        async def done():
            return (await summary(client, ids))["conversations"] == 1

        await eventually(done, what="the valid conversation counted")
        letters = await read_topic(broker.bootstrap, topics.dead_letter)
    assert len(letters) == 2


async def test_reports_need_the_ops_scope_and_check_their_parameters(metrics_app, ids):
    async with running(metrics_app) as client:
        as_agent = await client.get("/v1/metrics/summary", headers=ids.as_agent(ids.agent_ids[0]))
        scrape_anon = await client.get("/metrics")
        bad_channel = await client.get(
            "/v1/metrics/summary", params={"channel": "fax"}, headers=ids.as_ops
        )
        backwards = await client.get(
            "/v1/metrics/summary",
            headers=ids.as_ops,
            params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        )
        naive = await client.get(
            "/v1/metrics/summary", headers=ids.as_ops, params={"from": "2026-01-02T00:00:00"}
        )
        ready = await client.get("/readyz")
    assert as_agent.status_code == 403 and scrape_anon.status_code == 401
    assert bad_channel.status_code == 422 and naive.status_code == 422
    assert backwards.status_code == 400
    assert ready.json() == {
        "status": "ready",
        "checks": {"broker": "ok", "database": "ok", "consumer": "ok"},
    }


async def test_reported_figures_equal_the_pure_definitions_grouped_and_bucketed(
    metrics_app, ids, broker, topics
):
    import random

    from services.metrics.figures import summarize

    rng = random.Random(4)
    plan = []
    events = []
    for i in range(120):
        channel = rng.choice([Channel.CHAT, Channel.EMAIL])
        frt = round(rng.uniform(1, 3000), 3)
        resolution = frt + round(rng.uniform(0, 90000), 3)
        convo = conversation(
            frt,
            resolution,
            channel=channel,
            agent=f"ag-{i % 3}",
            priority=rng.choice([Priority.URGENT, Priority.LOW]),
        )
        shift = timedelta(hours=rng.randint(0, 47))
        events += [e.model_copy(update={"occurred_at": e.occurred_at + shift}) for e in convo]
        plan.append((channel.value, frt, resolution, T0 + shift))
    async with running(metrics_app) as client:
        await publish(broker, topics, events)

        async def all_in():
            s = await summary(client, ids)
            return s if s["resolution_s"]["count"] == 120 else None

        total = await eventually(all_in, what="120 conversations")
        grouped = await client.get(
            "/v1/metrics/summary", headers=ids.as_ops, params=[("group_by", "channel")]
        )
        series = await client.get(
            "/v1/metrics/timeseries", headers=ids.as_ops, params={"interval": "1d"}
        )
    expected = summarize(frt for _, frt, _, _ in plan)
    assert total["first_response_s"]["p50"] == pytest.approx(expected.p50)
    assert total["first_response_s"]["p99"] == pytest.approx(expected.p99)
    assert total["first_response_s"]["mean"] == pytest.approx(expected.mean)
    for group in grouped.json()["groups"]:
        mine = summarize(r for c, _, r, _ in plan if c == group["group"]["channel"])
        assert group["resolution_s"]["p90"] == pytest.approx(mine.p90)
        assert group["resolution_s"]["count"] == mine.count
    days = {}
    for _, frt, _, opened in plan:
        days.setdefault(opened.date(), []).append(frt)
    buckets = series.json()["buckets"]
    assert [b["conversations"] for b in buckets] == [len(v) for _, v in sorted(days.items())]
    for bucket, (_, values) in zip(buckets, sorted(days.items()), strict=True):
        assert bucket["first_response_s"]["p95"] == pytest.approx(summarize(values).p95)


async def test_a_conversation_without_a_reply_or_resolution_has_no_such_time(
    metrics_app, ids, broker, topics
):
    waiting = conversation(10, 20)[:4]  # opened, received, classified, assigned: no reply yet
    async with running(metrics_app) as client:
        await publish(broker, topics, waiting)

        async def counted():
            s = await summary(client, ids)
            return s if s["queue_wait_s"]["count"] == 1 else None

        figures = await eventually(counted, what="the waiting conversation counted")
    assert figures["conversations"] == 1
    assert figures["first_response_s"]["count"] == 0
    assert figures["resolution_s"]["count"] == 0


async def test_sla_policies_attainment_at_risk_breach_events_csat_and_live_queues(
    common, ids, broker, topics
):
    from datetime import UTC, datetime

    app = create_app(MetricsSettings(**common, sla_sweep_interval_s=0.2))
    now = datetime.now(UTC)
    met = conversation(1, 100)  # first response in 1 s: meets a 2 s target
    missed = conversation(5, 100)  # 5 s: misses it
    live = [e.model_copy(update={"occurred_at": now}) for e in conversation(10, 20)[:3]]
    async with running(app) as client:
        # The answered conversations are folded before any target exists: half-folded (opened,
        # reply not yet folded) and weeks old, the sweep would rightly find them breached.
        await publish(broker, topics, met + missed)

        async def answered_in():
            s = await summary(client, ids)
            return s["resolution_s"]["count"] == 2

        await eventually(answered_in, what="the two answered conversations")
        for channel, frt in (("chat", 2), ("*", 1000)):
            answer = await client.put(
                f"/v1/sla-policies/urgent/{channel}",
                headers=ids.as_ops,
                json={"first_response_target_s": frt, "resolution_target_s": 3600},
            )
            assert answer.status_code == 200, answer.text
        bad = await client.put(
            "/v1/sla-policies/urgent/fax",
            headers=ids.as_ops,
            json={"first_response_target_s": 1, "resolution_target_s": 1},
        )
        assert bad.status_code == 422
        await publish(broker, topics, live)

        async def all_in():
            s = await summary(client, ids)
            return s if s["conversations"] == 3 and s["resolution_s"]["count"] == 2 else None

        figures = await eventually(all_in, what="three conversations")
        assert figures["sla_first_response_attainment"] == 0.5
        assert figures["sla_resolution_attainment"] == 1.0

        risky = (await client.get("/v1/sla/at-risk", headers=ids.as_ops)).json()
        assert [r["conversation_id"] for r in risky] == [str(live[0].conversation_id)]
        assert risky[0]["target_s"] == 2 and risky[0]["time_left_s"] <= 2

        async def crossed():
            events = [
                json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.sla_events)
            ]
            kinds = [e["type"] for e in events]
            return events if "conversation.sla_breached" in kinds else None

        events = await eventually(crossed, what="the live conversation breached")
        # Announced once per conversation: delivery is at-least-once (a publish retried after
        # a lost acknowledgement, or a relay that died before forgetting what it published,
        # sends it again), always with the same event id, which consumers deduplicate on.
        for kind in ("conversation.sla_at_risk", "conversation.sla_breached"):
            announced = [e for e in events if e["type"] == kind]
            assert len({e["event_id"] for e in announced}) == 1
            assert {e["conversation_id"] for e in announced} == {str(live[0].conversation_id)}

        resolved_id, live_id = met[0].conversation_id, live[0].conversation_id
        rated = await client.post(
            f"/v1/conversations/{resolved_id}/csat",
            headers=ids.as_ingest,
            json={"score": 4, "comment": "quick"},
        )
        too_early = await client.post(
            f"/v1/conversations/{live_id}/csat", headers=ids.as_ingest, json={"score": 1}
        )
        unknown = await client.post(
            f"/v1/conversations/{uuid.uuid4()}/csat", headers=ids.as_ingest, json={"score": 5}
        )
        out_of_range = await client.post(
            f"/v1/conversations/{resolved_id}/csat", headers=ids.as_ingest, json={"score": 6}
        )
        assert rated.status_code == 204 and too_early.status_code == 409
        assert unknown.status_code == 404 and out_of_range.status_code == 422
        after = await summary(client, ids)
        assert after["csat_count"] == 1 and after["csat_mean"] == 4.0

        queues = (await client.get("/v1/live/queues", headers=ids.as_ops)).json()
        assert [(q["channel"], q["depth"]) for q in queues] == [("chat", 1)]
        scrape = await client.get("/metrics", headers=ids.as_ops)
    parsed = {m.name: m for m in text_string_to_metric_families(scrape.text)}
    assert [s.value for s in parsed["switchboard_queue_depth"].samples] == [1]
    assert [
        s.value for s in parsed["switchboard_sla_breaches"].samples if s.name.endswith("_total")
    ] == [1]


async def test_live_agents_come_in_pages_linked_by_next(metrics_app, ids, broker, topics):
    now = datetime.now(UTC)
    events = [
        AgentStatusChanged(
            event_id=derived_id("page", agent),
            occurred_at=now,
            agent_id=agent,
            status=AgentStatus.ONLINE,
        )
        for agent in ("ann", "ben", "cat", "dan", "eve")
    ]
    await produce(
        broker.bootstrap,
        topics.agent_events,
        [(e.agent_id, e.model_dump_json().encode()) for e in events],
    )
    async with running(metrics_app) as client:

        async def all_listed():
            answer = await client.get("/v1/live/agents", headers=ids.as_ops)
            return len(answer.json()) == 5

        await eventually(all_listed)
        seen, url = [], "/v1/live/agents?limit=2"
        while url:
            answer = await client.get(url, headers=ids.as_ops)
            assert answer.status_code == 200, answer.text
            seen.append([a["agent_id"] for a in answer.json()])
            url = answer.links.get("next", {}).get("url")
        bad = await client.get("/v1/live/agents?cursor=%25%25", headers=ids.as_ops)
    assert seen == [["ann", "ben"], ["cat", "dan"], ["eve"]]
    assert bad.status_code == 400
