"""The metrics service killed and kept down while events keep coming, then stopped gracefully
mid-stream: each time it catches up from its committed offsets, and its figures equal those of
a metrics service that ran without interruption."""

import asyncio
import random
from datetime import timedelta

import httpx
import pytest

from devtools.stack import create_database, drop_database, unique_name
from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.events import Channel, Priority
from tests.conftest import eventually, running
from tests.integration.scripted import T0, Script, publish
from tests.processes import Services

pytestmark = pytest.mark.faults

DOWN_S = 20
REPORTS = [
    ("/v1/metrics/summary", {"group_by": ["channel", "priority"]}),
    ("/v1/metrics/timeseries", {"interval": "1h", "group_by": "agent_id"}),
    ("/v1/metrics/summary", {"clock": "business", "group_by": "team"}),
]


def batch(rng, n):
    scripts = []
    for _ in range(n):
        start = T0 + timedelta(minutes=rng.randint(0, 600))
        s = Script(rng.choice(list(Channel)), rng.choice(list(Priority)), t0=start)
        agent = rng.choice(["ann", "ben", "cho"])
        s.message(0).classified(0).assigned(rng.randint(1, 60), agent, agent.upper())
        s.replied(rng.randint(61, 900), agent).message(1000).replied(
            1000 + rng.randint(1, 99), agent
        )
        if rng.random() < 0.7:
            s.resolved(2000 + rng.randint(0, 5000), agent)
        scripts.append(s)
    return scripts


async def reports(http, base, ids):
    out = []
    for path, params in REPORTS:
        answer = await http.get(f"{base}{path}", params=params, headers=ids.as_ops)
        assert answer.status_code == 200, answer.text
        out.append(answer.json())
    return out


async def test_metrics_catches_up_after_being_killed_and_after_a_graceful_stop(
    broker, database_url, pg, template_db, topics, ids, common, tmp_path
):
    rng = random.Random(46)
    services = Services.for_test(
        broker, database_url, topics, [e.model_dump() for e in ids.entries()], tmp_path
    )
    reference_db = unique_name("sb_reference")
    await create_database(pg.url, reference_db, template=template_db)
    reference = create_app(MetricsSettings(**common | {"database_url": pg.url_for(reference_db)}))
    sent = 0
    try:
        services.start("metrics", SWITCHBOARD_LOG_LEVEL="INFO")
        async with running(reference) as ref, httpx.AsyncClient(timeout=30) as http:
            base = services.url("metrics")

            async def same():
                mine = await reports(http, base, ids)
                return mine if mine == await reports(ref, "", ids) else None

            sent += await publish(broker, topics, batch(rng, 40))
            await eventually(same, timeout=60, what="both services agree (before the kill)")

            services.kill("metrics")
            sent += await publish(broker, topics, batch(rng, 40))
            await asyncio.sleep(DOWN_S)
            services.restart("metrics")
            after_kill = await eventually(same, timeout=90, what="caught up after the kill")

            sent += await publish(broker, topics, batch(rng, 80))
            exit_code = services.terminate("metrics")  # SIGTERM while those are applied
            graceful = "Application shutdown complete" in (tmp_path / "metrics.log").read_text()
            services.restart("metrics")
            final = await eventually(same, timeout=90, what="caught up after SIGTERM")
    finally:
        services.stop()
        await drop_database(pg.url, reference_db)
    # uvicorn finishes in-flight work, runs the lifespan's shutdown (the consume loop stops
    # after the record in hand; offsets were committed after each batch), then re-raises
    # the signal, hence -15.
    assert exit_code in (0, -15)
    assert graceful
    assert final[0]["conversations"] == 160 and after_kill[0]["conversations"] == 80
    print(
        f"\nmetrics down {DOWN_S}s after SIGKILL, then SIGTERM mid-stream: {sent} events, "
        f"figures equal to an uninterrupted service's ({final[0]['conversations']} "
        f"conversations, first responses {final[0]['first_response_s']['count']})"
    )
