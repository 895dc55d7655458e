"""A scripted event history through the real broker and metrics service, against answers
computed by hand; and a replay of the whole topic into an empty database."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from devtools.stack import create_database, drop_database, unique_name
from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.events import Channel, CustomerTier, Priority
from tests.conftest import eventually, running
from tests.integration.scripted import Script, publish

SGT = ZoneInfo("Asia/Singapore")
APAC = {
    "time_zone": "Asia/Singapore",
    "weekly": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2026-12-25"],
    "channels": ["email"],
}


def history():
    # A: answered, handed from alice (team day) to bob (team night), resolved, reopened and
    # resolved again. First responses 60 s and, after the reopen, 100 s; one next reply of 60 s.
    a = (
        Script(Channel.CHAT, Priority.URGENT)
        .message(0)
        .classified(0)
        .assigned(5, "alice", "day")
        .message(30)
        .replied(60, "alice")
        .message(100)
        .assigned(130, "bob", "night")
        .replied(160, "bob")
        .resolved(200, "bob")
        .reopened(300)
        .message(300)
        .replied(400, "bob")
        .resolved(500, "bob")
    )
    # B: an email on Christmas Eve at 17:00 Singapore time, answered on Monday at 10:00
    # (89 h later; 2 business hours: Thursday 17-18 and Monday 9-10, Friday is a holiday)
    # and resolved at 11:00 (90 h after opening; 3 business hours).
    eve = datetime(2026, 12, 24, 17, 0, tzinfo=SGT)
    b = Script(Channel.EMAIL, Priority.NORMAL, tier=CustomerTier.VIP)
    b.events[0] = b.events[0].model_copy(update={"occurred_at": eve})
    b.message(eve).classified(eve).assigned(eve + timedelta(minutes=10), "carol", "day")
    b.replied(eve + timedelta(hours=89), "carol").resolved(eve + timedelta(hours=90), "carol")
    # C: a quick chat: first response after 30 s, resolved after 120 s.
    c = (
        Script(Channel.CHAT, Priority.URGENT)
        .message(0)
        .classified(0)
        .assigned(2, "alice", "day")
        .replied(30, "alice")
        .resolved(120, "alice")
    )
    return a, b, c


async def get(client, ids, path, **params):
    answer = await client.get(path, params=params, headers=ids.as_ops)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def applied(app, records):
    """Wait until the app's consumer applied ``records`` records (a conversation can look
    resolved before its reopening is applied, so counting resolutions is not enough)."""

    async def probe():
        return app.state.consume_loop.applied >= records

    await eventually(probe, what=f"{records} records applied")


async def test_figures_of_a_scripted_history_equal_the_hand_computed_answers(
    common, ids, broker, topics
):
    app = create_app(MetricsSettings(**common))
    async with running(app) as client:
        await applied(app, await publish(broker, topics, history()))
        total = await get(client, ids, "/v1/metrics/summary")

        assert total["conversations"] == 3
        assert total["first_response_s"] == {
            "count": 4,  # A twice (its reopen), B, C
            "mean": (30 + 60 + 100 + 89 * 3600) / 4,
            "min": 30.0,
            "max": 89 * 3600.0,
            "p50": 60.0,
            "p90": 89 * 3600.0,
            "p95": 89 * 3600.0,
            "p99": 89 * 3600.0,
        }
        assert total["next_reply_s"]["count"] == 1 and total["next_reply_s"]["p50"] == 60.0
        assert (total["resolution_s"]["p50"], total["resolution_s"]["max"]) == (500.0, 90 * 3600)
        assert total["queue_wait_s"]["max"] == 600.0
        assert total["reassignments_mean"] == pytest.approx(1 / 3)
        assert total["messages_per_conversation_mean"] == pytest.approx((7 + 2 + 2) / 3)

        # No calendar yet: the desk counts around the clock, business time = calendar time.
        business = await get(client, ids, "/v1/metrics/summary", clock="business")
        assert business["first_response_s"]["max"] == 89 * 3600.0

        # A calendar for email: B's times are derived again in business hours.
        put = await client.put("/v1/calendars/apac", headers=ids.as_ops, json=APAC)
        assert put.status_code == 200, put.text
        assert put.json()["recomputed_conversations"] == 1
        business = await get(client, ids, "/v1/metrics/summary", clock="business")
        assert business["first_response_s"]["max"] == 2 * 3600.0
        assert business["first_response_s"]["mean"] == (30 + 60 + 100 + 2 * 3600) / 4
        assert business["resolution_s"]["max"] == 3 * 3600.0
        calendar = await get(client, ids, "/v1/metrics/summary")
        assert calendar["first_response_s"] == total["first_response_s"]

        by_team = await get(client, ids, "/v1/metrics/summary", group_by="team")
        # A grouped summary makes its total in the same pass: the same as asking for it alone.
        assert {k: v for k, v in by_team.items() if k != "groups"} == {
            k: v for k, v in calendar.items() if k != "groups"
        }
        teams = {g["group"]["team"]: g for g in by_team["groups"]}
        assert {t: g["conversations"] for t, g in teams.items()} == {"day": 2, "night": 1}
        assert teams["night"]["first_response_s"]["count"] == 2  # A, both episodes
        night = await get(client, ids, "/v1/metrics/summary", team="night")
        assert night["resolution_s"]["p50"] == 500.0
        vip = await get(client, ids, "/v1/metrics/summary", customer_tier="vip")
        assert vip["conversations"] == 1 and vip["queue_wait_s"]["p50"] == 600.0
        by_agent = await get(client, ids, "/v1/metrics/summary", group_by="agent_id")
        replies = {
            g["group"]["agent_id"]: g["first_response_s"]["count"] for g in by_agent["groups"]
        }
        assert replies == {"alice": 2, "bob": 1, "carol": 1}  # who gave each first response

        bad = await client.put(
            "/v1/calendars/broken", headers=ids.as_ops, json={**APAC, "time_zone": "Mars/Base"}
        )
        assert bad.status_code == 400 and "Mars/Base" in bad.json()["detail"]
        assert (await client.get("/v1/calendars/broken", headers=ids.as_ops)).status_code == 404


async def test_replaying_the_whole_topic_into_an_empty_database_gives_identical_figures(
    common, ids, broker, topics, pg, template_db
):
    first = create_app(MetricsSettings(**common))
    scripts = history()
    reports = [
        ("/v1/metrics/summary", {"group_by": ["channel", "priority", "team"]}),
        ("/v1/metrics/summary", {"clock": "business", "group_by": "agent_id"}),
        ("/v1/metrics/timeseries", {"interval": "1d", "group_by": "channel"}),
        ("/v1/metrics/timeseries", {"interval": "1h", "clock": "business"}),
    ]

    async def figures(client):
        return [await get(client, ids, path, **params) for path, params in reports]

    async with running(first) as client:
        assert (await client.put("/v1/calendars/apac", headers=ids.as_ops, json=APAC)).is_success
        # The history, with every event delivered twice (at-least-once).
        sent = await publish(broker, topics, scripts)
        await publish(broker, topics, scripts)
        await applied(first, 2 * sent)
        before = await figures(client)

    empty = unique_name("sb_replay")
    await create_database(pg.url, empty, template=template_db)
    try:
        replay = create_app(
            MetricsSettings(
                **common | {"database_url": pg.url_for(empty), "consumer_group": f"replay-{empty}"}
            )
        )
        async with running(replay) as client:
            assert (
                await client.put("/v1/calendars/apac", headers=ids.as_ops, json=APAC)
            ).is_success
            await applied(replay, 2 * sent)
            after = await figures(client)
    finally:
        await drop_database(pg.url, empty)
    assert after == before
