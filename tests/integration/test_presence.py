"""Presence follows the agent's frontend: an agent online whose frontend neither long-polls
nor sends heartbeats is set away by itself, its unanswered work is re-routed, metrics shows
it, and after a restart nobody counts as online until heard from again."""

import asyncio
import json

from sqlalchemy import text

from services.metrics.app import create_app as create_metrics_app
from services.metrics.settings import MetricsSettings
from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import assignments, inbound, put_agent, scalar, send

TIMEOUT_S = 3.0  # well above a heartbeat gap on a loaded 2-core CI machine


def presence(common, **extra):
    given = {"queue_sweep_interval_s": 0.2, "presence_timeout_s": TIMEOUT_S}
    return RouterSettings(**common, **given | {"presence_flush_s": 0.2} | extra)


async def status_of(db, agent):
    return await scalar(db, "SELECT status FROM router.agents WHERE id = :a", a=agent)


async def keep_heard(client, ids, agent, stop, *, poll=False):
    """A frontend that is there: heartbeats (or long-polls) until ``stop``."""
    while not stop.is_set():
        if poll:
            await assignments(client, ids, agent, wait=0.3)
        else:
            answer = await client.post(f"/v1/agents/{agent}/heartbeat", headers=ids.as_agent(agent))
            assert answer.status_code == 200, answer.text
            await asyncio.sleep(0.3)


async def test_a_silent_agent_goes_away_and_its_unanswered_work_goes_to_one_who_is_there(
    common, ids, broker, topics, db
):
    silent, present = ids.agent_ids[:2]
    router_app = create_app(presence(common))
    metrics_app = create_metrics_app(
        MetricsSettings(
            **common | {"consumer_group": common["consumer_group"] + "-metrics"},
            events_fetch_max_wait_ms=20,
        )
    )
    stop = asyncio.Event()
    async with running(router_app) as client, running(metrics_app) as metrics:
        await put_agent(client, ids, silent)
        await send(broker, topics, inbound("gone", "hello, I need help"))
        (conv,) = (await assignments(client, ids, silent, wait=10))["conversations"]
        await put_agent(client, ids, present)
        heard = asyncio.create_task(keep_heard(client, ids, present, stop))
        try:

            async def moved():
                got = await assignments(client, ids, present)
                return got["conversations"]

            (taken,) = await eventually(moved, timeout=10, what="the conversation re-routed")
            assert taken["id"] == conv["id"]
            assert await status_of(db, silent) == "away"
            assert await status_of(db, present) == "online"
        finally:
            stop.set()
            await heard

        # The frontend learns it is away when it is heard from again.
        back = await assignments(client, ids, silent)
        assert back["status"] == "away" and back["conversations"] == []

        async def away_event():
            records = await read_topic(broker.bootstrap, topics.agent_events)
            found = [json.loads(r.value) for r in records]
            return [
                e
                for e in found
                if e["agent_id"] == silent and e.get("reason") == "presence_timeout"
            ]

        (event,) = await eventually(away_event, what="the presence event")
        assert event["type"] == "agent.status_changed" and event["status"] == "away"

        async def shown():
            answer = await metrics.get("/v1/live/agents?limit=1000", headers=ids.as_ops)
            by_id = {a["agent_id"]: a["status"] for a in answer.json()}
            return by_id.get(silent) == "away" and by_id.get(present) == "online"

        await eventually(shown, what="metrics shows the silent agent away")


async def test_long_polls_keep_an_agent_online_without_a_write_per_poll(
    common, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    stop = asyncio.Event()
    unflushed = create_app(presence(common, presence_flush_s=3600))
    async with running(unflushed) as client:
        await put_agent(client, ids, agent)
        before = await scalar(db, "SELECT last_seen_at FROM router.agents WHERE id = :a", a=agent)
        for _ in range(20):
            await assignments(client, ids, agent)
        # Polls are remembered in the process, not written one by one.
        assert (
            await scalar(db, "SELECT last_seen_at FROM router.agents WHERE id = :a", a=agent)
            == before
        )
        assert await unflushed.state.presence.flush() == 1
        after = await scalar(db, "SELECT last_seen_at FROM router.agents WHERE id = :a", a=agent)
        assert after > before

    async with running(create_app(presence(common))) as client:
        await put_agent(client, ids, agent)
        polling = asyncio.create_task(keep_heard(client, ids, agent, stop, poll=True))
        await asyncio.sleep(TIMEOUT_S * 3)
        stop.set()
        await polling
        assert await status_of(db, agent) == "online"
        # Ops reading an agent's assignments is not the agent's frontend.
        for _ in range(int(TIMEOUT_S * 10)):
            answer = await client.get(f"/v1/agents/{agent}/assignments", headers=ids.as_ops)
            assert answer.status_code == 200
            if await status_of(db, agent) == "away":
                break
            await asyncio.sleep(0.2)
        assert await status_of(db, agent) == "away"


async def test_after_a_restart_nobody_is_online_until_heard_from(common, ids, broker, topics, db):
    quiet, back = ids.agent_ids[:2]
    async with running(create_app(RouterSettings(**common))) as client:
        await put_agent(client, ids, quiet)
        await put_agent(client, ids, back)
    # The desk was down for longer than the timeout.
    async with db.begin() as conn:
        await conn.execute(
            text(
                "UPDATE router.agents SET last_seen_at = now() - interval '1 hour' "
                "WHERE id IN (:a, :b)"
            ),
            {"a": quiet, "b": back},
        )
    stop = asyncio.Event()
    async with running(create_app(presence(common))) as client:
        heard = asyncio.create_task(keep_heard(client, ids, back, stop))
        try:

            async def quiet_away():
                return await status_of(db, quiet) == "away"

            await eventually(quiet_away, timeout=10, what="the unheard agent set away")
        finally:
            stop.set()
            await heard
        assert await status_of(db, back) == "online"


async def test_presence_works_with_the_router_split_in_roles(common, ids, broker, topics, db):
    """The API process hears the frontend; the intake process's sweep reads what it heard."""
    polled, silent = ids.agent_ids[:2]
    api = create_app(presence(common, role="api"))
    intake = create_app(presence(common, role="intake"))
    stop = asyncio.Event()
    async with running(api) as client, running(intake):
        await put_agent(client, ids, polled)
        await put_agent(client, ids, silent)
        heard = asyncio.create_task(keep_heard(client, ids, polled, stop, poll=True))
        try:

            async def silent_away():
                return await status_of(db, silent) == "away"

            await eventually(silent_away, timeout=10, what="the silent agent set away")
            await asyncio.sleep(TIMEOUT_S)
            assert await status_of(db, polled) == "online"
        finally:
            stop.set()
            await heard


async def test_a_heartbeat_is_the_agents_or_a_desks_only(common, ids, broker, topics):
    agent, other = ids.agent_ids[:2]
    async with running(create_app(presence(common))) as client:
        await put_agent(client, ids, agent, online=False)
        own = await client.post(f"/v1/agents/{agent}/heartbeat", headers=ids.as_agent(agent))
        assert own.status_code == 200, own.text
        assert own.json() == {
            "agent_id": agent,
            "status": "offline",
            "presence_timeout_s": TIMEOUT_S,
        }
        assert (
            await client.post(f"/v1/agents/{agent}/heartbeat", headers=ids.as_desk)
        ).status_code == 200
        for headers in (ids.as_agent(other), ids.as_ops):
            answer = await client.post(f"/v1/agents/{agent}/heartbeat", headers=headers)
            assert answer.status_code == 403, answer.text
        missing = await client.post("/v1/agents/nobody-here/heartbeat", headers=ids.as_desk)
        assert missing.status_code == 404


def test_the_default_timeout_outlasts_the_longest_long_poll():
    settings = RouterSettings(max_poll_wait_s=60)
    assert settings.presence_timeout > settings.max_poll_wait_s
    assert RouterSettings(presence_timeout_s=0).presence_timeout == 0
