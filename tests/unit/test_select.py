import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.router.routing.queue import QueuedConversation, next_for_agent, queue_key
from services.router.routing.select import (
    AgentView,
    Need,
    choose_agent,
    is_eligible,
    rank_candidates,
)
from shared.events import AgentStatus, Channel, Priority, Skill

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHAT_GENERAL_EN = Need(Channel.CHAT, Skill.GENERAL, "en")


def agent(
    id,
    *,
    load=0,
    capacity=3,
    status=AgentStatus.ONLINE,
    skills=None,
    languages=("en",),
    idle_since=None,
):
    return AgentView(
        id=id,
        status=status,
        skills=skills or {"general": 1},
        languages=frozenset(languages),
        capacity={"chat": capacity},
        load={"chat": load},
        last_assigned_at=idle_since,
    )


def test_the_least_loaded_agent_gets_the_conversation():
    agents = [agent("busy", load=2), agent("free", load=0), agent("half", load=1)]
    assert choose_agent(agents, CHAT_GENERAL_EN).id == "free"


def test_load_is_relative_to_capacity():
    agents = [agent("small", load=1, capacity=2), agent("big", load=2, capacity=8)]
    assert choose_agent(agents, CHAT_GENERAL_EN).id == "big"


def test_ties_go_to_the_agent_idle_longest():
    agents = [
        agent("recent", idle_since=T0 + timedelta(minutes=5)),
        agent("long", idle_since=T0),
        agent("later", idle_since=T0 + timedelta(minutes=1)),
    ]
    assert choose_agent(agents, CHAT_GENERAL_EN).id == "long"
    assert choose_agent([*agents, agent("never")], CHAT_GENERAL_EN).id == "never"


def test_offline_unskilled_foreign_or_full_agents_are_not_eligible():
    need = Need(Channel.CHAT, Skill.SECURITY, "ko")
    agents = [
        agent("away", status=AgentStatus.AWAY, skills={"security": 3}, languages=["ko"]),
        agent("no-skill", languages=["ko"]),
        agent("no-korean", skills={"security": 3}),
        agent("full", load=3, skills={"security": 3}, languages=["ko"]),
    ]
    assert choose_agent(agents, need) is None
    ok = agent("ok", skills={"security": 1}, languages=["ko", "en"])
    assert choose_agent([*agents, ok], need) is ok


def test_an_unknown_language_can_go_to_anyone():
    assert choose_agent([agent("a", languages=["ja"])], Need(Channel.CHAT, Skill.GENERAL, "und"))


# ---------------------------------------------------------------- properties

agents_strategy = st.lists(
    st.builds(
        agent,
        id=st.text("abcdef", min_size=1, max_size=4),
        load=st.integers(0, 5),
        capacity=st.integers(0, 5),
        status=st.sampled_from(list(AgentStatus)),
        skills=st.dictionaries(
            st.sampled_from(["general", "funds"]), st.integers(1, 5), min_size=1
        ),
        languages=st.lists(st.sampled_from(["en", "zh", "ko"]), min_size=1, max_size=3),
        idle_since=st.none() | st.integers(0, 100).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=12,
    unique_by=lambda a: a.id,
)
needs_strategy = st.builds(
    Need,
    channel=st.just(Channel.CHAT),
    skill=st.sampled_from([Skill.GENERAL, Skill.FUNDS]),
    language=st.sampled_from(["en", "zh", "ko", "und"]),
)


def reference_choice(agents, need):
    """Brute force: every eligible agent, sorted by the documented order."""
    eligible = [
        a
        for a in agents
        if a.status == AgentStatus.ONLINE
        and a.skills.get(need.skill.value, 0) >= 1
        and (need.language == "und" or need.language in a.languages)
        and a.load["chat"] < a.capacity["chat"]
    ]
    never = [a for a in eligible if a.last_assigned_at is None]

    def key(a):
        return (
            a.load["chat"] / a.capacity["chat"],
            a.last_assigned_at is not None,
            a.last_assigned_at or T0,
            a.id,
        )

    return min(eligible, key=key, default=None) if eligible or never else None


@given(agents_strategy, needs_strategy)
def test_choice_matches_the_brute_force_reference(agents, need):
    assert choose_agent(agents, need) == reference_choice(agents, need)


@given(agents_strategy, needs_strategy)
def test_chosen_agent_is_eligible_and_no_eligible_agent_is_less_loaded(agents, need):
    chosen = choose_agent(agents, need)
    eligible = [a for a in agents if is_eligible(a, need)]
    assert (chosen is None) == (not eligible)
    if chosen is not None:
        assert is_eligible(chosen, need)
        assert all(chosen.occupancy(need.channel) <= a.occupancy(need.channel) for a in eligible)
        assert rank_candidates(agents, need)[0] == chosen


queued_strategy = st.lists(
    st.builds(
        QueuedConversation,
        conversation_id=st.uuids(),
        priority=st.sampled_from(list(Priority)),
        queued_at=st.integers(0, 3000).map(lambda s: T0 + timedelta(seconds=s)),
        need=st.builds(
            Need,
            channel=st.just(Channel.CHAT),
            skill=st.sampled_from([Skill.GENERAL, Skill.FUNDS]),
            language=st.sampled_from(["en", "zh"]),
        ),
    ),
    max_size=20,
)
NOW = T0 + timedelta(hours=1)
STEP = 600.0


def reference_effective_rank(item):
    """Aging by the documented rule: one level per full step waited, never above urgent."""
    waited = (NOW - item.queued_at).total_seconds()
    rank = item.priority.rank
    while waited >= STEP and rank > 0:
        rank, waited = rank - 1, waited - STEP
    return rank


@given(queued_strategy, agents_strategy.filter(bool))
def test_a_freed_agent_pulls_the_first_item_in_aged_queue_order_it_can_take(queued, agents):
    taker = agents[0]
    pulled = next_for_agent(queued, taker, now=NOW, step_s=STEP)
    takeable = [q for q in queued if is_eligible(taker, q.need)]
    assert (pulled is None) == (not takeable)
    if pulled is not None:
        for other in takeable:
            assert (reference_effective_rank(pulled), pulled.queued_at) <= (
                reference_effective_rank(other),
                other.queued_at,
            )


def item(priority, queued_at):
    return QueuedConversation(uuid.uuid4(), priority, queued_at, CHAT_GENERAL_EN)


def test_urgent_conversations_are_served_before_older_low_ones():
    old_low = item(Priority.LOW, NOW - timedelta(minutes=5))
    new_urgent = item(Priority.URGENT, NOW - timedelta(minutes=1))
    order = sorted([old_low, new_urgent], key=lambda q: queue_key(q, now=NOW, step_s=STEP))
    assert order == [new_urgent, old_low]
    assert next_for_agent([old_low, new_urgent], agent("a"), now=NOW, step_s=STEP) == new_urgent


def test_a_low_item_that_waited_long_enough_goes_before_newer_urgent_ones():
    starving = item(Priority.LOW, NOW - timedelta(seconds=3 * STEP + 1))
    fresh_urgent = [item(Priority.URGENT, NOW - timedelta(seconds=s)) for s in range(0, 100, 10)]
    first = next_for_agent([*fresh_urgent, starving], agent("a"), now=NOW, step_s=STEP)
    assert first == starving
    half_way = item(Priority.LOW, NOW - timedelta(seconds=2 * STEP))  # ranks as high now
    first = next_for_agent([*fresh_urgent, half_way], agent("a"), now=NOW, step_s=STEP)
    assert first in fresh_urgent


def test_team_exclusions_and_the_overall_cap_limit_eligibility():
    l2 = Need(Channel.CHAT, Skill.GENERAL, "en", team="L2")
    assert not is_eligible(agent("a"), l2)
    assert is_eligible(replace(agent("a"), team="L2"), l2)
    assert not is_eligible(agent("a"), replace(CHAT_GENERAL_EN, excluded=frozenset({"a"})))
    capped = replace(agent("a", load=1, capacity=5), max_load=1)
    assert capped.room(Channel.CHAT) == 0
    assert not is_eligible(capped, CHAT_GENERAL_EN)


def test_skill_level_must_reach_the_required_level():
    need = Need(Channel.CHAT, Skill.SECURITY, "en", min_level=3)
    assert not is_eligible(agent("junior", skills={"security": 2}), need)
    assert is_eligible(agent("senior", skills={"security": 3}), need)
