"""Agent selection: the eligible agent with the lowest load ÷ capacity, ties to the longest idle."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.router.routing.classify import UNKNOWN_LANGUAGE
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


def suits(agent: AgentView, need: Need) -> bool:
    """Online, skilled enough, speaks the language (unknown language: anyone), in the team the
    conversation needs (if any) and not excluded from it: eligible but for room. After
    overflow, a fallback language will do, and the overflow team's agents need no skill."""
    return (
        agent.status == AgentStatus.ONLINE
        and (
            (
                agent.skills.get(need.skill, 0) >= need.min_level
                and (need.team is None or agent.team == need.team)
            )
            or (need.overflow_team is not None and agent.team == need.overflow_team)
        )
        and (
            need.language == UNKNOWN_LANGUAGE
            or need.language in agent.languages
            or not need.fallback_languages.isdisjoint(agent.languages)
        )
        and agent.id not in need.excluded
    )


def is_eligible(agent: AgentView, need: Need) -> bool:
    """Suits the need and has room on the channel."""
    return suits(agent, need) and agent.room(need.channel) > 0


RankKey = tuple[float, int, float, str]


def rank_key(agent: AgentView, channel: Channel) -> RankKey:
    """Lower is better: the least occupied on the channel; never assigned sorts first, then
    the earliest last assignment; the id makes it total."""
    idle = agent.last_assigned_at
    return (
        agent.occupancy(channel),
        0 if idle is None else 1,
        idle.timestamp() if idle is not None else 0.0,
        agent.id,
    )


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
