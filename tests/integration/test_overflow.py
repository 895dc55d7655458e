"""Nobody waits forever (issue 16, part 5), through the real router (and metrics for the stuck
views): overflow stages of the rules file widen a waiting conversation's language, skill or
team after a wait that depends on its priority; each widening is in rules_fired, in
``/v1/queues`` and announced; a conversation nobody takes after its last stage is stuck in the
router's queues, metrics' live queues (the dashboard's data) and ``/metrics``."""

import json
from pathlib import Path

import pytest

from services.metrics.app import create_app as create_metrics_app
from services.metrics.settings import MetricsSettings
from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import (
    assignments,
    conversation_of,
    holder_of,
    inbound,
    put_agent,
    send,
    set_status,
)

RULES = """
rules:
  - {id: api, priority: normal, skill: api, patterns: ['\\bapi\\b']}
  - {id: security, priority: urgent, skill: security, min_level: 5, patterns: [hacked]}
overflow:
  - id: to-english
    after_s: {urgent: 0.5, normal: 1}
    languages: [en]
  - id: to-general
    after_s: {normal: 2}
    skill: general
  - id: to-tier2
    after_s: {urgent: 1, normal: 3}
    team: tier2
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def router_app(common, rules_file):
    return create_app(
        RouterSettings(
            **common | {"consumer_group": common["consumer_group"] + "-router"},
            queue_sweep_interval_s=0.2,
            rules_path=rules_file,
        )
    )


async def conversation_id(db, ref):
    async def found():
        return await conversation_of(db, f"chat:{ref}")

    return str(await eventually(found, what=f"conversation {ref}"))


async def published(broker, topics, conv_id, kind, count=1):
    """The events of ``kind`` the router published for the conversation, once there are
    ``count`` of them (the outbox relay publishes after the commit)."""

    async def found():
        records = await read_topic(broker.bootstrap, topics.conversation_events)
        events = [json.loads(r.value) for r in records]
        mine = [e for e in events if e["conversation_id"] == conv_id and e["type"] == kind]
        return mine if len(mine) >= count else None

    return await eventually(found, what=f"{kind} of {conv_id} published")


async def test_a_french_message_with_no_french_speaker_widens_to_english_and_is_assigned(
    common, rules_file, ids, broker, topics, db
):
    english = ids.agent_ids[0]
    async with running(router_app(common, rules_file)) as client:
        await put_agent(client, ids, english, skills={"general": 1}, languages=("en",))
        await send(broker, topics, inbound("fr", "Bonjour, j'ai une question", language="fr"))
        conv_id = await conversation_id(db, "fr")
        queued = await holder_of(client, ids, conv_id)
        assert queued["state"] == "queued"
        assert queued["classification"]["language"] == "fr"

        got = await assignments(client, ids, english, wait=10)
        assert [c["id"] for c in got["conversations"]] == [conv_id]
        conv = got["conversations"][0]
        assert conv["classification"]["language"] == "fr"  # the customer's, as before
        assert "overflow.to-english" in conv["classification"]["rules_fired"]
        (event,) = await published(broker, topics, conv_id, "conversation.overflowed")
        assert event["stage"] == "to-english"
        assert event["fallback_languages"] == ["en"]
        assert event["final"] is False
        assert event["waited_s"] >= 1


async def test_a_skill_nobody_has_widens_to_the_fallback_skill(
    common, rules_file, ids, broker, topics, db
):
    generalist = ids.agent_ids[0]
    async with running(router_app(common, rules_file)) as client:
        await put_agent(client, ids, generalist, skills={"general": 1}, online=False)
        await send(broker, topics, inbound("api", "the api answers 500"))
        conv_id = await conversation_id(db, "api")

        async def widened_in_queues():
            queues = (await client.get("/v1/queues", headers=ids.as_ops)).json()
            general = [q for q in queues if q["skill"] == "general" and q["overflowed"]]
            return general or None

        # Nobody online: it waits through its stages, queued under the skill it needs now.
        (row,) = await eventually(widened_in_queues, what="the api conversation under general")
        assert row["depth"] == 1 and row["overflowed"] == 1

        await set_status(client, ids, generalist, "online")
        got = await assignments(client, ids, generalist, wait=10)
        assert [c["id"] for c in got["conversations"]] == [conv_id]
        fired = got["conversations"][0]["classification"]["rules_fired"]
        assert got["conversations"][0]["classification"]["skill"] == "general"
        assert {"api", "overflow.to-general"} <= set(fired)
        stages = [
            e["stage"]
            for e in await published(broker, topics, conv_id, "conversation.overflowed", 2)
        ]
        assert stages[:2] == ["to-english", "to-general"]


async def test_an_urgent_conversation_nobody_is_senior_enough_for_is_handed_to_a_team(
    common, rules_file, ids, broker, topics, db
):
    junior, tier2 = ids.agent_ids[:2]
    async with running(router_app(common, rules_file)) as client:
        await put_agent(client, ids, junior, skills={"security": 2})
        # The team's agent has no security skill at all: the hand-off needs none.
        await put_agent(client, ids, tier2, skills={"general": 1}, team="tier2")
        await send(broker, topics, inbound("sec", "I was hacked"))
        conv_id = await conversation_id(db, "sec")
        got = await assignments(client, ids, tier2, wait=10)
        assert [c["id"] for c in got["conversations"]] == [conv_id]
        assert "overflow.to-tier2" in got["conversations"][0]["classification"]["rules_fired"]
        assert (await assignments(client, ids, junior))["conversations"] == []
        events = await published(broker, topics, conv_id, "conversation.overflowed", 2)
        assert [(e["stage"], e["team"], e["final"]) for e in events] == [
            ("to-english", None, False),
            ("to-tier2", "tier2", True),
        ]


async def test_a_conversation_nobody_takes_after_its_last_stage_is_stuck_everywhere(
    common, rules_file, ids, broker, topics, db
):
    metrics_app = create_metrics_app(
        MetricsSettings(
            **common | {"consumer_group": common["consumer_group"] + "-metrics"},
            sla_sweep_interval_s=3600,
            events_fetch_max_wait_ms=20,
        )
    )
    english = ids.agent_ids[0]
    async with (
        running(router_app(common, rules_file)) as router,
        running(metrics_app) as metrics,
    ):
        # Online, English and general, but in no team and without the api skill's room:
        # nobody can take a Korean api question, through every stage.
        await put_agent(router, ids, english, skills={"general": 1}, capacity={"email": 1})
        await send(broker, topics, inbound("stuck", "api 오류가 발생합니다"))
        conv_id = await conversation_id(db, "stuck")

        async def stuck_in_router():
            queues = (await router.get("/v1/queues", headers=ids.as_ops)).json()
            return [q for q in queues if q["stuck"]] or None

        (row,) = await eventually(stuck_in_router, what="stuck in the router's queues")
        assert (row["skill"], row["language"], row["depth"], row["stuck"]) == (
            "general",
            "ko",
            1,
            1,
        )
        conv = await holder_of(router, ids, conv_id)
        assert conv["state"] == "queued"
        assert [r for r in conv["classification"]["rules_fired"] if r.startswith("overflow.")] == [
            "overflow.to-english",
            "overflow.to-general",
            "overflow.to-tier2",
        ]

        async def stuck_in_metrics():
            live = (await metrics.get("/v1/live/queues", headers=ids.as_ops)).json()
            return [q for q in live if q["stuck"]] or None

        (live,) = await eventually(stuck_in_metrics, what="stuck in metrics' live queues")
        assert (live["channel"], live["priority"], live["depth"], live["stuck"]) == (
            "chat",
            "normal",
            1,
            1,
        )
        exposition = (await metrics.get("/metrics", headers=ids.as_ops)).text
        assert 'switchboard_conversations_stuck{channel="chat",priority="normal"} 1.0' in (
            exposition
        )
