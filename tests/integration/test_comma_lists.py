"""Wherever a query parameter may be repeated, it also takes a comma-separated list
(issue 16): ``group_by=channel,priority`` is ``group_by=channel&group_by=priority``."""

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.events import Channel, Priority
from tests.conftest import eventually, running
from tests.integration.test_metrics import conversation, publish


async def test_group_by_takes_a_comma_separated_list_as_repeated_parameters(
    common, ids, broker, topics
):
    events = [
        *conversation(10, 100, channel=Channel.CHAT, priority=Priority.URGENT),
        *conversation(20, 200, channel=Channel.EMAIL, priority=Priority.LOW),
        *conversation(30, 300, channel=Channel.EMAIL, priority=Priority.URGENT),
    ]
    async with running(create_app(MetricsSettings(**common))) as client:
        await publish(broker, topics, events)

        async def report(params):
            answer = await client.get("/v1/metrics/summary", headers=ids.as_ops, params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            return body if body["resolution_s"]["count"] == 3 else None

        repeated = await eventually(
            lambda: report([("group_by", "channel"), ("group_by", "priority")]),
            what="three conversations folded",
        )
        assert len(repeated["groups"]) == 3
        for params in (
            [("group_by", "channel,priority")],
            [("group_by", " channel , priority ")],
            [("group_by", "channel,"), ("group_by", "priority")],
        ):
            assert await report(params) == repeated, params
        series = await client.get(
            "/v1/metrics/timeseries",
            headers=ids.as_ops,
            params={"group_by": "channel,priority", "interval": "1d"},
        )
        assert series.status_code == 200
        assert {tuple(b["group"]) for b in series.json()["buckets"]} == {("channel", "priority")}
        unknown = await client.get(
            "/v1/metrics/summary", headers=ids.as_ops, params={"group_by": "channel,mood"}
        )
        assert unknown.status_code == 422
