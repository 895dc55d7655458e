"""Routing rules through the real router: levels, teams, caps, categories, hot reload,
corrections, transfers, offers, reopening, leaving, escalation, aging, queue views."""

import asyncio
import json
from pathlib import Path

import pytest

from services.router.app import create_app
from services.router.routing.rules import DEFAULT_RULES_PATH
from services.router.settings import RouterSettings
from shared.events import Channel
from tests.conftest import eventually, read_topic, running
from tests.integration.routerkit import (
    act,
    assignments,
    conversation_of,
    holder_of,
    inbound,
    put_agent,
    scalar,
    send,
    set_status,
)

CUSTOM_RULES = """
aging: {step_s: 1}
escalation:
  first_response_target_s: {urgent: 1.5, high: 3600, normal: 3600, low: 3600}
  at: 0.8
  widen_to_level: 1
rules:
  - {id: senior.security, priority: urgent, skill: security, patterns: [hacked], min_level: 4}
  - {id: l2.api, priority: normal, skill: api, patterns: ['\\bapi\\b'], team: L2}
  - {id: form.funds, priority: high, skill: funds, categories: [deposit]}
  - {id: feedback, priority: low, skill: general, patterns: [suggestion]}
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(CUSTOM_RULES)
    return path


def app_with(common, rules_file=None, **settings):
    return create_app(
        RouterSettings(
            **common,
            queue_sweep_interval_s=0.2,
            rules_path=rules_file or DEFAULT_RULES_PATH,
            **settings,
        )
    )


async def conversation_id(db, ref, channel="chat"):
    async def found():
        return await conversation_of(db, f"{channel}:{ref}")

    return str(await eventually(found, what=f"conversation {ref}"))


async def state(client, ids, conv_id):
    return await holder_of(client, ids, conv_id)


async def test_skill_level_and_team_decide_who_may_take_a_conversation(
    common, rules_file, ids, broker, topics, db
):
    junior, senior, l1, l2 = ids.agent_ids[:4]
    async with running(app_with(common, rules_file)) as client:
        await put_agent(client, ids, junior, skills={"security": 2})
        await put_agent(client, ids, senior, skills={"security": 4})
        await put_agent(client, ids, l1, skills={"api": 5}, team="L1")
        await put_agent(client, ids, l2, skills={"api": 1}, team="L2")
        await send(broker, topics, inbound("sec", "I got hacked"), inbound("api", "api errors"))
        sec = (await assignments(client, ids, senior, wait=10))["conversations"]
        api = (await assignments(client, ids, l2, wait=10))["conversations"]
        assert [c["conversation_key"] for c in sec] == ["chat:sec"]
        assert sec[0]["classification"]["min_level"] == 4
        assert [c["conversation_key"] for c in api] == ["chat:api"]
        assert api[0]["classification"]["team"] == "L2"
        assert (await assignments(client, ids, junior))["conversations"] == []
        assert (await assignments(client, ids, l1))["conversations"] == []


async def test_the_form_category_classifies_and_the_overall_cap_holds(
    common, rules_file, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    async with running(app_with(common, rules_file)) as client:
        await put_agent(
            client,
            ids,
            agent,
            skills={"funds": 1, "general": 1},
            capacity={"chat": 5, "form": 5},
            max_load=2,
        )
        await send(
            broker,
            topics,
            inbound("f1", "please check", channel=Channel.FORM, category="deposit"),
            inbound("c1", "hello"),
            inbound("c2", "hello again"),
        )
        await eventually(lambda: _queued(db, 1), what="the third conversation queued")
        agents = (await client.get("/v1/agents", headers=ids.as_ops)).json()
        mine = next(a for a in agents if a["id"] == agent)
        assert mine["total_load"] == 2 and mine["max_load"] == 2
        form = await state(client, ids, await conversation_id(db, "f1", "form"))
        assert form["classification"]["priority"] == "high"
        assert form["classification"]["rules_fired"][0] == "form.funds"
        assert form["category"] == "deposit"

        # Raising the cap pulls the waiting conversation at once.
        await put_agent(
            client,
            ids,
            agent,
            skills={"funds": 1, "general": 1},
            capacity={"chat": 5, "form": 5},
            max_load=3,
            online=False,
        )
        assert await _queued(db, 0)


async def _queued(db, n):
    return await scalar(db, "SELECT count(*) FROM router.conversations WHERE state = 'queued'") == n


async def test_rules_reload_without_restart_and_a_bad_file_keeps_the_old_rules(
    common, rules_file, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    async with running(app_with(common, rules_file)) as client:
        await put_agent(client, ids, agent, skills={"general": 1, "trading": 1})
        rules_file.write_text(
            CUSTOM_RULES + "  - {id: new.trading, priority: high, "
            "skill: trading, patterns: [margin]}\n"
        )
        _touch(rules_file)
        await send(broker, topics, inbound("t1", "margin call issue"))
        conv = await state(client, ids, await conversation_id(db, "t1"))
        assert conv["classification"]["rules_fired"][0] == "new.trading"

        rules_file.write_text("rules: [{id: broken, priority: whenever}]")
        _touch(rules_file)
        await send(broker, topics, inbound("t2", "margin call again"))
        conv = await state(client, ids, await conversation_id(db, "t2"))
        assert conv["classification"]["rules_fired"][0] == "new.trading"


def _touch(path: Path) -> None:
    import os

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


async def test_an_agent_correction_re_routes_when_the_agent_no_longer_fits(
    common, ids, broker, topics, db
):
    generalist, trader = ids.agent_ids[:2]
    async with running(app_with(common)) as client:
        await put_agent(client, ids, generalist, skills={"general": 3})
        await put_agent(client, ids, trader, skills={"trading": 3})
        await send(broker, topics, inbound("corr", "hello, question about an order"))
        conv_id = (await assignments(client, ids, generalist, wait=10))["conversations"][0]["id"]
        corrected = await act(
            client, ids, generalist, conv_id, "classification", skill="trading", priority="high"
        )
        assert corrected.status_code == 200, corrected.text
        body = corrected.json()
        assert body["agent_id"] == trader
        assert body["classification"]["skill"] == "trading"
        assert body["classification"]["priority"] == "high"
        assert f"corrected.by.{generalist}" in body["classification"]["rules_fired"]
        still_mine = await act(client, ids, trader, conv_id, "classification", priority="urgent")
        assert still_mine.json()["agent_id"] == trader


async def test_transfers_to_an_agent_or_a_skill_queue_carry_a_reason(
    common, ids, broker, topics, db
):
    a, b, c = ids.agent_ids[:3]
    async with running(app_with(common)) as client:
        await put_agent(client, ids, a, skills={"general": 2})
        await send(broker, topics, inbound("tr", "hello"))
        conv_id = (await assignments(client, ids, a, wait=10))["conversations"][0]["id"]
        await put_agent(client, ids, b, skills={"general": 2}, online=False)
        refused = await act(client, ids, a, conv_id, "transfer", to_agent_id=b, reason="VIP")
        assert refused.status_code == 409  # b is offline
        await set_status(client, ids, b, "online")
        moved = await act(client, ids, a, conv_id, "transfer", to_agent_id=b, reason="VIP")
        assert moved.status_code == 200 and moved.json()["agent_id"] == b
        await put_agent(client, ids, c, skills={"api": 2})
        to_skill = await act(
            client, ids, b, conv_id, "transfer", to_skill="api", reason="needs an API specialist"
        )
        assert to_skill.json()["agent_id"] == c
        both = await act(
            client, ids, c, conv_id, "transfer", to_skill="api", to_agent_id=a, reason="x"
        )
        assert both.status_code == 422

        async def transferred():
            events = [
                json.loads(r.value)
                for r in await read_topic(broker.bootstrap, topics.conversation_events)
            ]
            found = [e for e in events if e["type"] == "conversation.transferred"]
            return found if len(found) == 2 else None

        events = await eventually(transferred, what="two transfer events")
        assert [
            (e["from_agent_id"], e["to_agent_id"], e["to_skill"], e["reason"]) for e in events
        ] == [(a, b, None, "VIP"), (b, None, "api", "needs an API specialist")]
        loads = {
            x["id"]: x["total_load"]
            for x in (await client.get("/v1/agents", headers=ids.as_ops)).json()
        }
        assert (loads[a], loads[b], loads[c]) == (0, 0, 1)


async def test_a_transfer_to_an_unknown_agent_is_404_and_keeps_the_conversation(
    common, ids, broker, topics, db
):
    a = ids.agent_ids[0]
    async with running(app_with(common)) as client:
        await put_agent(client, ids, a, skills={"general": 2})
        await send(broker, topics, inbound("tr-unknown", "hello"))
        conv_id = (await assignments(client, ids, a, wait=10))["conversations"][0]["id"]
        refused = await act(
            client, ids, a, conv_id, "transfer", to_agent_id="nobody-by-that-name", reason="x"
        )
        assert refused.status_code == 404, refused.text
        assert "nobody-by-that-name" in refused.json()["detail"]
        kept = await state(client, ids, conv_id)
        assert (kept["state"], kept["agent_id"]) == ("assigned", a)


async def test_a_transfer_to_an_agent_without_the_skill_at_the_needed_level_is_refused(
    common, rules_file, ids, broker, topics, db
):
    generalist, api_expert, junior, senior = ids.agent_ids[:4]
    async with running(app_with(common, rules_file)) as client:
        await put_agent(client, ids, generalist, skills={"general": 2})
        await put_agent(client, ids, api_expert, skills={"api": 2}, team="L2", online=False)
        await send(broker, topics, inbound("tr-skill", "hello"))
        conv_id = (await assignments(client, ids, generalist, wait=10))["conversations"][0]["id"]
        await set_status(client, ids, api_expert, "online")
        refused = await act(
            client, ids, generalist, conv_id, "transfer", to_agent_id=api_expert, reason="x"
        )
        assert refused.status_code == 409, refused.text
        assert "lacks skill 'general'" in refused.json()["detail"]
        moved = await act(client, ids, generalist, conv_id, "transfer", to_skill="api", reason="x")
        assert moved.json()["agent_id"] == api_expert
        back = await act(
            client, ids, api_expert, conv_id, "transfer", to_agent_id=generalist, reason="y"
        )
        assert back.status_code == 409, back.text
        assert "lacks skill 'api'" in back.json()["detail"]
        kept = await state(client, ids, conv_id)
        assert (kept["state"], kept["agent_id"]) == ("assigned", api_expert)

        # The level a rule requires binds too (senior.security: level 4).
        await put_agent(client, ids, senior, skills={"security": 4})
        await send(broker, topics, inbound("tr-level", "I got hacked"))
        sec_id = (await assignments(client, ids, senior, wait=10))["conversations"][0]["id"]
        await put_agent(client, ids, junior, skills={"security": 2})
        too_junior = await act(
            client, ids, senior, sec_id, "transfer", to_agent_id=junior, reason="z"
        )
        assert too_junior.status_code == 409, too_junior.text
        assert "at level 4" in too_junior.json()["detail"]
        loads = {
            x["id"]: x["total_load"]
            for x in (await client.get("/v1/agents", headers=ids.as_ops)).json()
        }
        assert (loads[generalist], loads[api_expert], loads[senior], loads[junior]) == (0, 1, 1, 0)


async def test_an_unaccepted_offer_moves_on_and_repeated_misses_set_the_agent_away(
    common, ids, broker, topics, db
):
    a, b = ids.agent_ids[:2]
    app = app_with(common, offer_timeout_s={"chat": 0.6}, max_missed_offers=2)
    async with running(app) as client:
        await put_agent(client, ids, a, skills={"general": 1})
        await send(broker, topics, inbound("o1", "hello"), inbound("o2", "hi there"))
        await eventually(lambda: _count(db, 2, "state = 'assigned'"), what="two offers to a")
        o1, o2 = await conversation_id(db, "o1"), await conversation_id(db, "o2")
        accepted = await act(client, ids, a, o1, "accept")
        assert accepted.status_code == 200 and accepted.json()["accepted_at"] is not None
        await put_agent(client, ids, b, skills={"general": 1})

        async def holder(conv, agent):
            return (await state(client, ids, conv))["agent_id"] == agent or None

        await eventually(lambda: holder(o2, b), what="the unaccepted offer moved from a to b")
        # b lets it time out too: nobody else may take it, so it waits in the queue.
        await eventually(lambda: holder(o2, None), what="o2 back in the queue")
        assert (await state(client, ids, o1))["agent_id"] == a  # accepted: stays

        await send(broker, topics, inbound("o3", "third"))  # b is least loaded: offered to b

        async def b_is_away():
            agents = (await client.get("/v1/agents", headers=ids.as_ops)).json()
            return next(x for x in agents if x["id"] == b)["status"] == "away" or None

        await eventually(b_is_away, what="b set away after two missed offers in a row")
        o3 = await conversation_id(db, "o3")
        await eventually(lambda: holder(o3, a), what="o3 moved on to a")

        async def three_timeouts_published():
            # The outbox relay publishes after the commit: events may trail the rows.
            records = await read_topic(broker.bootstrap, topics.conversation_events)
            kinds = [json.loads(r.value)["type"] for r in records]
            return kinds.count("conversation.offer_timed_out") == 3

        await eventually(three_timeouts_published, what="three offer_timed_out events")


async def _count(db, n, where):
    return await scalar(db, f"SELECT count(*) FROM router.conversations WHERE {where}") == n


async def test_reopening_within_the_window_goes_back_to_the_last_agent_if_online(
    common, ids, broker, topics, db
):
    a, b = ids.agent_ids[:2]
    async with running(app_with(common)) as client:
        await put_agent(client, ids, a, skills={"general": 1})
        await send(broker, topics, inbound("ro", "hello"))
        conv_id = (await assignments(client, ids, a, wait=10))["conversations"][0]["id"]
        await act(client, ids, a, conv_id, "resolve")
        await put_agent(client, ids, b, skills={"general": 1})  # idle, never assigned
        await send(broker, topics, inbound("ro", "one more thing"))
        back = await assignments(client, ids, a, wait=10)
        assert [c["id"] for c in back["conversations"]] == [conv_id]
        assert back["conversations"][0]["reopened"] == 1
        await act(client, ids, a, conv_id, "resolve")

        await set_status(client, ids, a, "offline")
        await send(broker, topics, inbound("ro", "and another"))
        elsewhere = await assignments(client, ids, b, wait=10)
        assert [c["id"] for c in elsewhere["conversations"]] == [conv_id]
        assert await scalar(db, "SELECT count(*) FROM router.conversations") == 1


async def test_after_the_window_a_new_message_opens_a_new_conversation(
    common, ids, broker, topics, db
):
    a = ids.agent_ids[0]
    async with running(app_with(common, reopen_window_s=0)) as client:
        await put_agent(client, ids, a, skills={"general": 1})
        await send(broker, topics, inbound("nw", "hello"))
        first = (await assignments(client, ids, a, wait=10))["conversations"][0]["id"]
        await act(client, ids, a, first, "resolve")
        await send(broker, topics, inbound("nw", "hello again"))
        second = (await assignments(client, ids, a, wait=10))["conversations"][0]["id"]
        assert second != first


async def test_an_agent_leaving_re_routes_unanswered_conversations_and_keeps_answered_ones(
    common, ids, broker, topics, db
):
    a, b = ids.agent_ids[:2]
    async with running(app_with(common)) as client:
        await put_agent(client, ids, a, skills={"general": 1}, capacity={"chat": 3})
        await send(broker, topics, inbound("l1", "first"), inbound("l2", "second"))
        await eventually(lambda: _count(db, 2, "state = 'assigned'"), what="both assigned")
        convs = (await assignments(client, ids, a))["conversations"]
        answered, unanswered = convs[0]["id"], convs[1]["id"]
        await act(client, ids, a, answered, "replies", text="on it")
        await put_agent(client, ids, b, skills={"general": 1})
        await set_status(client, ids, a, "away")
        assert (await state(client, ids, answered))["agent_id"] == a
        assert (await state(client, ids, unanswered))["agent_id"] == b


async def test_a_conversation_near_its_target_is_escalated_to_lower_levels(
    common, rules_file, ids, broker, topics, db
):
    junior = ids.agent_ids[0]
    async with running(app_with(common, rules_file)) as client:
        await put_agent(client, ids, junior, skills={"security": 1})
        await send(broker, topics, inbound("esc", "I was hacked"))
        conv_id = await conversation_id(db, "esc")
        assert (await state(client, ids, conv_id))["state"] == "queued"
        got = await assignments(client, ids, junior, wait=10)
        assert [c["id"] for c in got["conversations"]] == [conv_id]
        assert got["conversations"][0]["escalated_at"] is not None

        async def escalated_published():
            # The outbox relay publishes after the commit: the event may trail the row.
            records = await read_topic(broker.bootstrap, topics.conversation_events)
            return "conversation.escalated" in [json.loads(r.value)["type"] for r in records]

        await eventually(escalated_published, what="conversation.escalated published")


async def test_queue_view_shows_depth_oldest_wait_and_priority_mix_and_aging_applies(
    common, rules_file, ids, broker, topics, db
):
    agent = ids.agent_ids[0]
    async with running(app_with(common, rules_file)) as client:
        await put_agent(
            client, ids, agent, skills={"general": 1}, capacity={"chat": 1}, online=False
        )
        await send(broker, topics, inbound("old-low", "a suggestion"))
        await eventually(lambda: _queued(db, 1), what="the low one queued")
        await asyncio.sleep(3.2)  # aging step 1 s: the low one now ranks as urgent
        await send(broker, topics, inbound("new-normal", "hello"))
        await eventually(lambda: _queued(db, 2), what="both queued")
        queues = (await client.get("/v1/queues", headers=ids.as_ops)).json()
        general = next(q for q in queues if q["skill"] == "general")
        assert general["depth"] == 2
        assert general["priorities"] == {"low": 1, "normal": 1}
        assert general["oldest_wait_s"] >= 3
        await set_status(client, ids, agent, "online")
        got = await assignments(client, ids, agent, wait=5)
        assert [c["conversation_key"] for c in got["conversations"]] == ["chat:old-low"]


async def test_vip_ranks_higher_and_only_urgent_words_raise_a_waiting_conversation(
    common, ids, broker, topics, db
):
    async with running(app_with(common)) as client:
        await send(
            broker,
            topics,
            inbound("vip", "hello", tier="vip"),
            inbound("vip-urgent", "my account was hacked", tier="vip"),
            inbound("waiting", "hello"),
        )
        vip = await state(client, ids, await conversation_id(db, "vip"))
        assert vip["classification"]["priority"] == "high"
        assert "tier.vip" in vip["classification"]["rules_fired"]
        vip_urgent = await state(client, ids, await conversation_id(db, "vip-urgent"))
        assert vip_urgent["classification"]["priority"] == "urgent"
        assert "tier.vip" in vip_urgent["classification"]["rules_fired"]
        # docs/routing.md's example, as written there.
        waiting = await conversation_id(db, "waiting")
        await send(broker, topics, inbound("waiting", "still waiting?"))
        await eventually(lambda: _messages(db, waiting, 2), what="the nudge applied")
        assert (await state(client, ids, waiting))["classification"]["priority"] == "normal"
        await send(broker, topics, inbound("waiting", "now they took my funds"))
        await eventually(lambda: _messages(db, waiting, 3), what="the urgent follow-up applied")
        raised = (await state(client, ids, waiting))["classification"]
        assert raised["priority"] == "urgent" and raised["skill"] == "security"
        assert "security.account-compromise" in raised["rules_fired"]


async def _messages(db, conversation_id, n):
    count = await scalar(
        db, "SELECT count(*) FROM router.messages WHERE conversation_id = :c", c=conversation_id
    )
    return count == n
