"""Overflow stages (pure): validation that names the stage, and which stages a waiting
conversation goes through."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.router.model import Conversation
from services.router.routing.overflow import due_after, overflow
from services.router.routing.rules import RulesError, parse_rules
from services.router.routing.select import AgentView, Need, suits
from shared.events import AgentStatus, Channel, CustomerTier, Priority, Skill

RULES = """
rules: [{id: api, priority: normal, skill: api, patterns: [api]}]
overflow:
  - {id: to-english, after_s: {normal: 60, urgent: 10}, languages: [en]}
  - {id: to-general, after_s: {normal: 120}, skill: general}
  - {id: to-tier2, after_s: {normal: 300, urgent: 30}, team: tier2}
"""
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def waiting(seconds: float, priority: Priority = Priority.NORMAL, **fields) -> Conversation:
    return Conversation(
        id=uuid.uuid4(),
        conversation_key="chat:x",
        channel=Channel.CHAT,
        customer_id="c",
        customer_tier=CustomerTier.STANDARD,
        state="queued",
        priority=priority,
        skill=Skill.API,
        language="fr",
        rules_fired=("api", "language.ingest"),
        agent_id=None,
        opened_at=NOW - timedelta(seconds=seconds),
        queued_at=NOW - timedelta(seconds=seconds),
        assigned_at=None,
        first_response_at=None,
        resolved_at=None,
        **fields,
    )


@pytest.mark.parametrize(
    ("stage", "problem"),
    [
        ("{id: nothing, after_s: {normal: 60}}", "overflow stage 'nothing': widens nothing"),
        ("{id: bad-wait, after_s: {normal: 0}, languages: [en]}", "overflow stage 'bad-wait'"),
        ("{id: bad-prio, after_s: {soon: 5}, languages: [en]}", "overflow stage 'bad-prio'"),
        ("{id: bad-lang, after_s: {low: 5}, languages: [English]}", "'English'"),
        ("{id: bad-skill, after_s: {low: 5}, skill: cooking}", "overflow stage 'bad-skill'"),
        ("{id: typo, after_s: {low: 5}, langauges: [en]}", "overflow stage 'typo': langauges"),
        ("{after_s: {low: 5}, languages: [en]}", "overflow stage #2: id"),
    ],
)
def test_a_bad_overflow_stage_is_refused_naming_it(stage: str, problem: str) -> None:
    text = (
        "rules: [{id: api, priority: normal, skill: api, patterns: [api]}]\n"
        "overflow:\n  - {id: fine, after_s: {normal: 1}, languages: [en]}\n"
        f"  - {stage}\n"
    )
    with pytest.raises(RulesError) as refused:
        parse_rules(text, source="rules.yaml")
    assert problem in str(refused.value)


def test_stages_out_of_order_or_repeated_are_refused() -> None:
    base = "rules: [{id: a, priority: low, skill: general, patterns: [x]}]\noverflow:\n"
    with pytest.raises(RulesError, match="less than 60"):
        parse_rules(
            base + "  - {id: s1, after_s: {low: 60}, languages: [en]}\n"
            "  - {id: s2, after_s: {low: 30}, skill: general}\n"
        )
    with pytest.raises(RulesError, match="'s1' appears twice"):
        parse_rules(
            base + "  - {id: s1, after_s: {low: 60}, languages: [en]}\n"
            "  - {id: s1, after_s: {low: 90}, skill: general}\n"
        )


def test_the_shipped_rules_file_has_valid_overflow_stages() -> None:
    from services.router.routing.rules import DEFAULT_RULES_PATH, load_rules

    assert load_rules(DEFAULT_RULES_PATH).overflow


def test_nothing_widens_before_the_first_stage_is_due() -> None:
    assert overflow(waiting(59), parse_rules(RULES).overflow, now=NOW) == []


def test_every_due_stage_applies_in_order_and_the_last_makes_it_stuck() -> None:
    stages = parse_rules(RULES).overflow
    done = overflow(waiting(130), stages, now=NOW)
    assert [(w.stage.id, w.final) for w in done] == [("to-english", False), ("to-general", False)]
    conv = done[-1].conversation
    assert (conv.overflow_stage, conv.fallback_languages, conv.skill) == (2, ("en",), Skill.GENERAL)
    assert conv.rules_fired[-2:] == ("overflow.to-english", "overflow.to-general")
    assert conv.stuck_since is None
    later = overflow(conv, stages, now=NOW + timedelta(seconds=200))
    assert [(w.stage.id, w.final) for w in later] == [("to-tier2", True)]
    assert later[0].conversation.overflow_team == "tier2"
    assert later[0].conversation.stuck_since == NOW + timedelta(seconds=200)
    assert overflow(later[0].conversation, stages, now=NOW + timedelta(days=1)) == []


def test_a_stage_that_does_not_list_the_priority_is_skipped() -> None:
    stages = parse_rules(RULES).overflow
    done = overflow(waiting(31, Priority.URGENT), stages, now=NOW)
    assert [w.stage.id for w in done] == ["to-english", "to-tier2"]
    assert done[-1].conversation.skill == Skill.API
    assert due_after(stages)["urgent:1"] == 30  # to-general skipped
    assert "low:0" not in due_after(stages)


def test_a_widened_need_takes_fallback_speakers_and_the_team_whatever_its_skills() -> None:
    def agent(**fields) -> AgentView:
        base = dict(
            id="a",
            status=AgentStatus.ONLINE,
            skills={"api": 3},
            languages=frozenset({"de"}),
            capacity={"chat": 1},
        )
        return AgentView(**(base | fields))

    need = Need(Channel.CHAT, Skill.API, "fr")
    assert not suits(agent(), need)
    widened = Need(Channel.CHAT, Skill.API, "fr", fallback_languages=frozenset({"de"}))
    assert suits(agent(), widened)
    handed = Need(
        Channel.CHAT,
        Skill.SECURITY,
        "fr",
        5,
        fallback_languages=frozenset({"de"}),
        overflow_team="tier2",
    )
    assert not suits(agent(), handed)
    assert suits(agent(team="tier2", skills={}), handed)
