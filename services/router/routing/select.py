"""Agent selection: the eligible agent with the lowest load ÷ capacity, ties to the longest idle."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from services.router.model import Conversation
from services.router.routing.classify import UNKNOWN_LANGUAGE
from services.router.routing.rules import Escalation, RuleSet
from shared.events import AgentStatus, Channel, Skill


@dataclass(frozen=True)
class Need:
    """What a conversation needs of its agent."""

    channel: Channel
    skill: Skill
    language: str
    min_level: int = 1
    team: str | None = None  # None: any team
    excluded: frozenset[str] = frozenset()  # agents it must not go to (timed out, transferred)
    # Overflow (routing/overflow.py): other languages its agent may speak instead, and a team
    # whose agents may take it whatever their skills.
    fallback_languages: frozenset[str] = frozenset()
    overflow_team: str | None = None


@dataclass(frozen=True)
class AgentView:
    """An agent as routing sees it."""

    id: str
    status: AgentStatus
    skills: Mapping[str, int]
    languages: frozenset[str]
    capacity: Mapping[str, int]  # per channel
    load: Mapping[str, int] = field(default_factory=dict)  # open conversations per channel
    last_assigned_at: datetime | None = None  # None: never assigned, the longest idle of all
    team: str | None = None
    max_load: int | None = None  # overall cap across channels (None: only per-channel caps)

    @property
    def total_load(self) -> int:
        return sum(self.load.values())

    def room(self, channel: Channel) -> int:
        """Conversations the agent can still take on ``channel`` (the overall cap included)."""
        # A Channel is the str of its value: it looks up the per-channel maps as it is.
        room = self.capacity.get(channel, 0) - self.load.get(channel, 0)
        if self.max_load is not None:
            room = min(room, self.max_load - self.total_load)
        return room

    def occupancy(self, channel: Channel) -> float:
        """Load ÷ capacity on ``channel`` (1.0 or more: full)."""
        capacity = self.capacity.get(channel, 0)
        return self.load.get(channel, 0) / capacity if capacity > 0 else 1.0


# The levels of a skill, an agent's and a conversation's need (the agent schema and the rules
# file allow no others).
SKILL_LEVELS = range(1, 6)


def widened_by_escalation(
    min_level: int, team: str | None, escalation: Escalation
) -> tuple[int, str | None]:
    """The skill level and team an escalated conversation needs: its level down to
    ``widen_to_level``, and any team (None) if ``widen_teams``."""
    return min(min_level, escalation.widen_to_level), None if escalation.widen_teams else team


def need_for(conv: Conversation, rules: RuleSet) -> Need:
    """What the conversation needs of its agent; escalation widens level and team, overflow
    languages and team (routing/overflow.py; a fallback skill is the conversation's own)."""
    min_level, team = conv.min_level, conv.team
    if conv.escalated_at is not None:
        min_level, team = widened_by_escalation(min_level, team, rules.escalation)
    return Need(
        conv.channel,
        conv.skill,
        conv.language,
        min_level,
        team,
        frozenset(conv.excluded_agents),
        frozenset(conv.fallback_languages),
        conv.overflow_team,
    )


@dataclass(frozen=True)
class Reach:
    """Which skill levels an agent can take of the queue, computed from ``need_for``'s
    widening so that a read of the queue (``queue_store.queued_for``) applies no rule of its
    own: by skill, the highest level a conversation may need of it, not escalated and
    escalated, and whether an escalated conversation of another team is open to it."""

    levels: Mapping[str, int]
    escalated_levels: Mapping[str, int]
    escalated_any_team: bool


def reach(agent: AgentView, escalation: Escalation) -> Reach:
    """What ``agent`` can reach of the queue under ``escalation`` (see ``Reach``)."""
    escalated = {
        skill: max(
            (n for n in SKILL_LEVELS if widened_by_escalation(n, None, escalation)[0] <= level),
            default=0,
        )
        for skill, level in agent.skills.items()
    }
    # Whether escalation lifts a team restriction: any team stands for the conversation's.
    any_team = widened_by_escalation(SKILL_LEVELS[0], "team", escalation)[1] is None
    return Reach(dict(agent.skills), escalated, any_team)


# The terms of eligibility, each of which an eligible agent meets: ``suits`` checks the first
# four, ``is_eligible`` adds room. The one definition: the stores' reads of candidates are
# generated term by term from this list (``statements.eligible_sql``), as their order is from
# ``RANK_ORDER``; tests/integration/test_candidates.py holds the two renderings equal.
ELIGIBILITY = ("online", "skill_and_team", "language", "not_excluded", "room")


def suits(agent: AgentView, need: Need) -> bool:
    """Online, skilled enough, speaks the language (unknown language: anyone), in the team the
    conversation needs (if any) and not excluded from it: eligible but for room. After
    overflow, a fallback language will do, and the overflow team's agents need no skill.
    (One expression, not a loop over the terms: the batch planner asks it of every locked
    agent for every need.)"""
    return (
        # online
        agent.status == AgentStatus.ONLINE
        # skill_and_team
        and (
            (
                agent.skills.get(need.skill, 0) >= need.min_level
                and (need.team is None or agent.team == need.team)
            )
            or (need.overflow_team is not None and agent.team == need.overflow_team)
        )
        # language
        and (
            need.language == UNKNOWN_LANGUAGE
            or need.language in agent.languages
            or not need.fallback_languages.isdisjoint(agent.languages)
        )
        # not_excluded
        and agent.id not in need.excluded
    )


def is_eligible(agent: AgentView, need: Need) -> bool:
    """Suits the need and has room on the channel (the term ``room``)."""
    return suits(agent, need) and agent.room(need.channel) > 0


@dataclass(frozen=True)
class RankTerm:
    """One term of the candidates' order: a value of the agent on the need's channel, lower
    first (``nulls_first``: a missing value before any other)."""

    value: Literal["occupancy", "last_assigned_at", "id"]
    nulls_first: bool = False


# The candidates' order, best first: the least occupied on the channel; then the idle longest
# (never assigned before any earliest last assignment); then the id, in code-point order, so
# the order is total. The one definition: ``rank_key`` computes it, and the stores' reads of
# the few best candidates (``statements.CANDIDATE_ORDER``) are generated from it, so that the
# agents read are the best of this order however many are online.
RANK_ORDER: tuple[RankTerm, ...] = (
    RankTerm("occupancy"),
    RankTerm("last_assigned_at", nulls_first=True),
    RankTerm("id"),
)

_RANK_VALUES: dict[str, Callable[[AgentView, Channel], Any]] = {
    "occupancy": lambda agent, channel: agent.occupancy(channel),
    "last_assigned_at": lambda agent, channel: (
        t.timestamp() if (t := agent.last_assigned_at) is not None else None
    ),
    "id": lambda agent, channel: agent.id,  # str order is code-point order
}

RankKey = tuple[Any, ...]


def rank_key(agent: AgentView, channel: Channel) -> RankKey:
    """The agent's place in ``RANK_ORDER`` on ``channel``: lower is better."""
    key: list[Any] = []
    for term in RANK_ORDER:
        value = _RANK_VALUES[term.value](agent, channel)
        if term.nulls_first:
            key += (0, 0.0) if value is None else (1, value)
        else:
            key.append(value)
    return tuple(key)


def _rank_key(agent: AgentView, need: Need) -> RankKey:
    return rank_key(agent, need.channel)


def rank_candidates(agents: Iterable[AgentView], need: Need) -> list[AgentView]:
    """Eligible agents, best first (the next ones are fallbacks if a slot is taken meanwhile)."""
    return sorted((a for a in agents if is_eligible(a, need)), key=lambda a: _rank_key(a, need))


def choose_agent(agents: Iterable[AgentView], need: Need) -> AgentView | None:
    """The agent to assign to, or None when nobody is eligible (the conversation queues)."""
    return best_of((a for a in agents if is_eligible(a, need)), need)


def best_of(eligible: Iterable[AgentView], need: Need) -> AgentView | None:
    """The best of agents already known to be eligible for ``need`` (None if there are none;
    the batch planner keeps a heap per need instead, routing/batch.py)."""
    return min(eligible, key=lambda a: rank_key(a, need.channel), default=None)
