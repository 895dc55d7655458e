"""Plan a batch of inbound messages: the pure core of the router's batched consumer.

Given the messages of one poll (in offset order) and the state they meet, locked (their
threads' conversations, which of their ids were applied before, the agents that could take
them), the plan is what applying them one at a time would do: the conversations and messages
to write, the agents' new loads, who to wake, and the events in order. ``handlers`` is the
one-at-a-time reference; tests hold this module to it."""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from pydantic import BaseModel

from services.router.model import Conversation, Policy
from services.router.routing import events
from services.router.routing.classify import (
    UNKNOWN_LANGUAGE,
    Classification,
    classify,
    raise_on_followup,
)
from services.router.routing.rules import RuleSet
from services.router.routing.select import (
    AgentView,
    Need,
    RankKey,
    need_for,
    rank_key,
    suits,
)
from shared.events import AgentStatus, Attachment, Channel, InboundMessage
from shared.ids import derived_id


@dataclass(frozen=True)
class Intake:
    """What a batch meets, read and locked before planning."""

    seen: frozenset[uuid.UUID]  # message ids applied before
    threads: Mapping[str, Conversation]  # by key: the open conversation, else a reopenable one
    agents: Mapping[str, AgentView]  # every agent the batch may assign to or reopen with


@dataclass(frozen=True)
class NewMessage:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    author: str
    text: str
    created_at: datetime
    channel_message_id: str | None
    sent_at: datetime | None
    attachments: Sequence[Attachment] = ()
    edit_of: uuid.UUID | None = None


@dataclass
class Plan:
    """The writes of a batch: rows in their final state, and the events in order."""

    now: datetime
    created: dict[uuid.UUID, Conversation] = field(default_factory=dict)
    changed: dict[uuid.UUID, Conversation] = field(default_factory=dict)
    messages: list[NewMessage] = field(default_factory=list)
    claims: dict[tuple[str, Channel], int] = field(default_factory=dict)  # slots taken
    woken: dict[str, int] = field(default_factory=dict)  # agent id: inbox bumps
    # Each event with its conversation and the message that caused it.
    events: list[tuple[uuid.UUID, BaseModel, uuid.UUID]] = field(default_factory=list)
    # (message, conversation, agent) of each assignment or offer, in order.
    given: list[tuple[uuid.UUID, uuid.UUID, str]] = field(default_factory=list)
    skipped: int = 0  # messages applied before


def classify_message(message: InboundMessage, rules: RuleSet) -> Classification:
    return classify(
        message.text_for_routing or message.text,
        rules=rules,
        tier=message.customer.tier,
        language_hint=message.customer.language,
        channel=message.channel,
        category=message.category,
    )


def needs_of_batch(
    messages: Iterable[InboundMessage],
    threads: Mapping[str, Conversation],
    classified: Mapping[uuid.UUID, Classification],
) -> list[Need]:
    """Every need the batch may assign for (before planning, to find the agents to lock): a
    new conversation's, and a reopened one's (raised or not; reopening clears exclusions and
    escalation). A follow-up to an open conversation assigns nothing."""
    needs: list[Need] = []
    for message in messages:
        found = classified[message.message_id]
        conv = threads.get(message.conversation_key)
        if conv is None:
            needs.append(
                Need(message.channel, found.skill, found.language, found.min_level, found.team)
            )
        elif conv.state == "resolved":
            raised = raise_on_followup(conv.classification, found)
            needs.append(
                Need(conv.channel, raised.skill, raised.language, raised.min_level, raised.team)
            )
    return needs


class _Planner:
    def __init__(
        self,
        intake: Intake,
        rules: RuleSet,
        policy: Policy,
        now: datetime,
        classified: Mapping[uuid.UUID, Classification],
    ) -> None:
        self.rules = rules
        self.classified = classified
        # Per need, the agents that suit it (status, skills, languages and teams do not change
        # within a batch; loads do), as a heap by rank (_best_for).
        self.heaps: dict[Need, list[tuple[RankKey, str]]] = {}
        self.by_language: dict[str, list[AgentView]] | None = None
        # Each agent's rank on a channel, until it takes a conversation (its key changes then).
        self.ranks: dict[str, dict[Channel, RankKey]] = {}
        self.policy = policy
        self.now = now
        self.seen = set(intake.seen)
        self.threads = dict(intake.threads)
        self.agents = dict(intake.agents)
        self.plan = Plan(now)
        self.cause = uuid.UUID(int=0)  # the message being applied

    # ------------------------------------------------------------ state changes

    def _save(self, conv: Conversation) -> Conversation:
        self.threads[conv.conversation_key] = conv
        if conv.id in self.plan.created:
            self.plan.created[conv.id] = conv
        else:
            self.plan.changed[conv.id] = conv
        return conv

    def _emit(self, conv: Conversation, event: BaseModel) -> None:
        self.plan.events.append((conv.id, event, self.cause))

    def _wake(self, agent_id: str) -> None:
        self.plan.woken[agent_id] = self.plan.woken.get(agent_id, 0) + 1

    def _claim(self, agent_id: str, channel: Channel) -> bool:
        """``store.claim_slot``: an online agent with room on the channel takes one more."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.status != AgentStatus.ONLINE or agent.room(channel) <= 0:
            return False
        load = {**agent.load, channel.value: agent.load.get(channel.value, 0) + 1}
        if agent.last_assigned_at is not None and agent.last_assigned_at > self.now:
            self.heaps.clear()  # its rank falls (see _best_for): rebuild them
        self.agents[agent_id] = replace(agent, load=load, last_assigned_at=self.now)
        self.ranks.pop(agent_id, None)
        slot = (agent_id, channel)
        self.plan.claims[slot] = self.plan.claims.get(slot, 0) + 1
        return True

    def _best_for(self, need: Need) -> AgentView | None:
        """``select.choose_agent`` over the agents of the batch: the lowest ``rank_key`` among
        those that suit the need and have room.

        Each need keeps a heap of its agents by the rank each had when last looked at. Within
        a batch a rank only grows (an agent that takes a conversation is as or more occupied,
        and assigned later) and room only shrinks: an agent without room leaves the heap, one
        whose rank grew goes back in with it, and the top is taken once its rank is current.
        A last assignment later than the batch's time would break that; ``_claim`` then starts
        the heaps afresh."""
        heap = self.heaps.get(need)
        if heap is None:
            # An overflowed need (never one a batch meets: reopening resets overflow) may go
            # to speakers of other languages.
            first_cut = (
                self.agents.values() if need.fallback_languages else self._speaking(need.language)
            )
            suited = [a for a in first_cut if suits(a, need)]
            heap = self.heaps[need] = [(self._rank(a, need.channel), a.id) for a in suited]
            heapq.heapify(heap)
        while heap:
            ranked, agent_id = heap[0]
            agent = self.agents[agent_id]
            if agent.room(need.channel) <= 0:
                heapq.heappop(heap)
                continue
            current = self._rank(agent, need.channel)
            if current != ranked:
                heapq.heapreplace(heap, (current, agent_id))
                continue
            return agent
        return None

    def _rank(self, agent: AgentView, channel: Channel) -> RankKey:
        known = self.ranks.setdefault(agent.id, {})
        key = known.get(channel)
        if key is None:
            key = known[channel] = rank_key(agent, channel)
        return key

    def _speaking(self, language: str) -> list[AgentView]:
        """The agents that may suit a need in ``language`` (a first cut: ``suits`` decides)."""
        if language == UNKNOWN_LANGUAGE:
            return list(self.agents.values())
        if self.by_language is None:
            self.by_language = {}
            for agent in self.agents.values():
                for spoken in agent.languages:
                    self.by_language.setdefault(spoken, []).append(agent)
        # Loads change within a batch, languages do not: the current view of each agent.
        return [self.agents[a.id] for a in self.by_language.get(language, [])]

    # ------------------------------------------------------------ use cases

    def receive(self, message: InboundMessage) -> None:
        """``handlers.receive_message``."""
        if message.message_id in self.seen:
            self.plan.skipped += 1
            return
        self.seen.add(message.message_id)
        self.cause = message.message_id
        found = self.classified.get(message.message_id) or classify_message(message, self.rules)
        conv = self.threads.get(message.conversation_key)
        if conv is not None and conv.state == "resolved":
            since = self.now - self.policy.reopen_window
            if conv.resolved_at is None or conv.resolved_at < since:
                conv = None
        if conv is None:
            self._open(message, found)
            return
        if message.group is not None and message.group != conv.group_name:
            conv = self._save(replace(conv, group_name=message.group))
        if conv.state == "resolved":
            self._reopen(conv, message, found)
        else:
            self._continue(conv, message, found)

    def _open(self, message: InboundMessage, found: Classification) -> None:
        conv = Conversation(
            id=derived_id("conversation", message.message_id),
            conversation_key=message.conversation_key,
            channel=message.channel,
            customer_id=message.customer.id,
            customer_tier=message.customer.tier,
            state="queued",
            priority=found.priority,
            skill=found.skill,
            language=found.language,
            rules_fired=tuple(found.rules_fired),
            agent_id=None,
            opened_at=message.occurred_at,
            queued_at=message.occurred_at,
            assigned_at=None,
            first_response_at=None,
            resolved_at=None,
            category=message.category,
            min_level=found.min_level,
            team=found.team,
            group_name=message.group,
        )
        self.plan.created[conv.id] = conv
        self._save(conv)
        self._add_message(conv, message)
        self._emit(conv, events.opened(conv, message))
        self._emit_received(conv, message)
        self._emit_classified(conv, message.message_id)
        if not self._try_assign(conv):
            self._emit_queued(conv, None)

    def _continue(self, conv: Conversation, message: InboundMessage, found: Classification) -> None:
        """A follow-up stays with the conversation's agent; while waiting, words of urgency
        raise the priority."""
        self._add_message(conv, message)
        self._emit_received(conv, message)
        if conv.state == "assigned" and conv.agent_id is not None:
            self._wake(conv.agent_id)
            return
        self._raise(conv, message, found)

    def _reopen(self, conv: Conversation, message: InboundMessage, found: Classification) -> None:
        """Back to the last agent if online with room, else routed."""
        last_agent = conv.last_agent_id or conv.agent_id
        conv = self._save(
            replace(
                conv,
                state="queued",
                agent_id=None,
                resolved_at=None,
                queued_at=self.now,
                offered_at=None,
                accepted_at=None,
                escalated_at=None,
                excluded_agents=(),
                reopened=conv.reopened + 1,
                overflow_stage=0,
                fallback_languages=(),
                overflow_team=None,
                stuck_since=None,
            )
        )
        self._emit(conv, events.reopened(conv, message, last_agent))
        self._add_message(conv, message)
        self._emit_received(conv, message)
        conv = self._raise(conv, message, found)
        if last_agent is not None and self._claim(last_agent, conv.channel):
            self._give(conv, last_agent)
        elif not self._try_assign(conv):
            self._emit_queued(conv, "reopened")

    def _raise(
        self, conv: Conversation, message: InboundMessage, found: Classification
    ) -> Conversation:
        """A waiting conversation's priority raised by a follow-up's words of urgency."""
        raised = raise_on_followup(conv.classification, found)
        if raised == conv.classification:
            return conv
        conv = self._reclassify(conv, raised)
        self._emit_classified(conv, message.message_id)
        return conv

    def _reclassify(self, conv: Conversation, c: Classification) -> Conversation:
        return self._save(
            replace(
                conv,
                priority=c.priority,
                skill=c.skill,
                language=c.language,
                rules_fired=tuple(c.rules_fired),
                min_level=c.min_level,
                team=c.team,
            )
        )

    def _add_message(self, conv: Conversation, message: InboundMessage) -> None:
        self.plan.messages.append(
            NewMessage(
                message.message_id,
                conv.id,
                message.customer.id,
                message.text,
                message.occurred_at,
                message.channel_message_id,
                message.sent_at,
                message.attachments,
                message.edit_of,
            )
        )

    def _try_assign(self, conv: Conversation) -> bool:
        agent = self._best_for(need_for(conv, self.rules))
        if agent is None or not self._claim(agent.id, conv.channel):
            return False
        self._give(conv, agent.id)
        return True

    def _give(self, conv: Conversation, agent_id: str) -> None:
        """``assign.give`` after a claimed slot: assigned, or offered where the channel asks
        for acceptance; the agent is woken either way."""
        offer = conv.channel in self.policy.offer_timeout_s
        self._save(
            replace(
                conv,
                state="assigned",
                agent_id=agent_id,
                assigned_at=self.now,
                offered_at=self.now,
                accepted_at=None if offer else self.now,
            )
        )
        self._wake(agent_id)
        self.plan.given.append((self.cause, conv.id, agent_id))
        if offer:
            timeout_s = self.policy.offer_timeout_s[conv.channel]
            self._emit(conv, events.offered(conv, agent_id, self.now, timeout_s))
        else:
            team = self.agents[agent_id].team
            self._emit(conv, events.assigned(conv, agent_id, team, self.now))

    # ------------------------------------------------------------ events

    def _emit_received(self, conv: Conversation, message: InboundMessage) -> None:
        self._emit(conv, events.received(conv, message))

    def _emit_classified(self, conv: Conversation, cause: object) -> None:
        self._emit(conv, events.classified(conv, cause, self.now))

    def _emit_queued(self, conv: Conversation, reason: str | None) -> None:
        self._emit(conv, events.queued(conv, self.now, reason))


def plan_batch(
    messages: Iterable[InboundMessage],
    intake: Intake,
    *,
    rules: RuleSet,
    policy: Policy,
    now: datetime,
    classified: Mapping[uuid.UUID, Classification] | None = None,
) -> Plan:
    """What applying ``messages`` one at a time, in order, at ``now`` would write and emit
    (``classified``: the messages' classifications, where already made)."""
    planner = _Planner(intake, rules, policy, now, classified or {})
    for message in messages:
        planner.receive(message)
    return planner.plan
