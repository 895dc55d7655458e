"""The metrics service stays down while conversations are answered within their target and
others are not; when it comes back and folds the backlog (in batches small enough for many
sweeps to run meanwhile), exactly the real breaches are announced: never one answered in time,
and those answered late, never answered, or resolved late without an answer."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from shared.events import Channel, Priority
from tests.conftest import eventually, read_topic
from tests.integration.scripted import Script, publish
from tests.processes import Services

pytestmark = pytest.mark.faults

TARGET_S = 3
IN_TIME = 200  # answered after 1 s: each one half-folded would look breached at wall time
LATE = 3  # answered after 8 s
NEVER = 3
GAVE_UP = 2  # resolved after 8 s without a reply


async def wait_until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_after_a_backlog_exactly_the_real_breaches_are_announced(
    broker, database_url, db, topics, ids, tmp_path
):
    services = Services.for_test(
        broker, database_url, topics, [e.model_dump() for e in ids.entries()], tmp_path
    )
    try:
        base = services.start("metrics", SWITCHBOARD_SLA_SWEEP_INTERVAL_S="0.2")
        async with httpx.AsyncClient(base_url=base, headers=ids.as_ops, timeout=30) as http:
            answer = await http.put(
                "/v1/sla-policies/urgent/*",
                json={"first_response_target_s": TARGET_S, "resolution_target_s": 3600},
            )
            assert answer.status_code == 200, answer.text

        async def swept_while_caught_up():
            async with db.connect() as conn:
                partitions = await conn.scalar(text("SELECT count(*) FROM metrics.fold_clock"))
                swept = await conn.scalar(text("SELECT swept_to FROM metrics.sla_sweep"))
            return partitions == 6 and swept is not None

        await eventually(swept_while_caught_up, what="a sweep with every partition known")
        services.kill("metrics")

        # While metrics is down, the desk lives on: each event is published as it happens.
        t0 = datetime.now(UTC)
        scripts = {
            kind: [Script(Channel.CHAT, Priority.URGENT, t0=t0) for _ in range(n)]
            for kind, n in (
                ("in_time", IN_TIME),
                ("late", LATE),
                ("never", NEVER),
                ("gave_up", GAVE_UP),
            )
        }
        everyone = [s for group in scripts.values() for s in group]
        for s in everyone:
            s.message(0).classified(0)
        await publish(broker, topics, everyone)
        for kind, at in (("in_time", 1), ("late", 8), ("gave_up", 8)):
            for s in scripts[kind]:
                s.events.clear()
                if kind == "gave_up":
                    s.resolved(at, "ann")
                else:
                    s.replied(at, "ann")
            await wait_until(t0 + timedelta(seconds=at))
            await publish(broker, topics, scripts[kind])
        await asyncio.sleep(1)

        # Back, folding five events per transaction: a sweep runs between many of them.
        services.extra["metrics"]["SWITCHBOARD_FOLD_BATCH_MAX_RECORDS"] = "5"
        services.restart("metrics")
        expected = {str(s.id) for s in scripts["late"] + scripts["never"] + scripts["gave_up"]}

        async def announced():
            events = [
                json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.sla_events)
            ]
            return [e for e in events if e["type"].startswith("conversation.sla_")]

        async def every_breach():
            crossings = await announced()
            breached = {e["conversation_id"] for e in crossings if e["type"].endswith("breached")}
            return crossings if breached >= expected else None

        await eventually(every_breach, timeout=90, what="the real breaches announced")
        await asyncio.sleep(3)  # several sweeps after the backlog is folded: nothing more
        crossings = await announced()
    finally:
        services.stop()
    in_time = {str(s.id) for s in scripts["in_time"]}
    breaches = [e for e in crossings if e["type"] == "conversation.sla_breached"]
    assert {e["conversation_id"] for e in breaches} == expected
    assert not in_time & {e["conversation_id"] for e in crossings}
    # Each breach happened when the target ran out, whenever metrics learned of it.
    deadline = t0 + timedelta(seconds=TARGET_S)
    assert {datetime.fromisoformat(e["occurred_at"]) for e in breaches} == {deadline}
    print(
        f"\n{IN_TIME} answered in time, {LATE} late, {NEVER} never, {GAVE_UP} resolved late "
        f"unanswered, folded 5 events per "
        f"transaction after the downtime: {len({e['event_id'] for e in breaches})} breaches "
        f"announced, all real"
    )
