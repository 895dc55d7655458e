"""Scripted conversation histories for the metrics tests: events as a desk would live them."""

import uuid
from datetime import UTC, datetime, timedelta

from shared.events import (
    AgentReplied,
    Assigned,
    Classified,
    ConversationOpened,
    CustomerTier,
    MessageReceived,
    Reopened,
    Resolved,
    Skill,
)
from shared.ids import derived_id
from tests.conftest import produce

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


class Script:
    """Events of one conversation, written as a support desk would live them."""

    def __init__(self, channel, priority, *, tier=CustomerTier.STANDARD, t0=T0):
        self.t0 = t0
        self.id = uuid.uuid4()
        self.channel = channel
        self.events = []
        self._n = 0
        self.priority = priority
        self._add(
            ConversationOpened,
            0,
            conversation_key=f"k:{self.id}",
            customer_id="c",
            customer_tier=tier,
        )

    def _add(self, model, at, **fields):
        self._n += 1
        when = at if isinstance(at, datetime) else self.t0 + timedelta(seconds=at)
        self.events.append(
            model(
                event_id=derived_id("script", self.id, self._n),
                occurred_at=when,
                conversation_id=self.id,
                channel=self.channel,
                **fields,
            )
        )
        return self

    def message(self, at):
        return self._add(MessageReceived, at, message_id=uuid.uuid4())

    def classified(self, at):
        return self._add(
            Classified,
            at,
            priority=self.priority,
            skill=Skill.FUNDS,
            language="en",
            rules_fired=["script"],
        )

    def assigned(self, at, agent, team=None):
        return self._add(Assigned, at, agent_id=agent, team=team)

    def replied(self, at, agent):
        return self._add(AgentReplied, at, agent_id=agent, message_id=uuid.uuid4())

    def resolved(self, at, agent):
        return self._add(Resolved, at, agent_id=agent)

    def reopened(self, at):
        return self._add(Reopened, at, message_id=uuid.uuid4(), last_agent_id=None)


async def publish(broker, topics, scripts):
    """Every event of ``scripts`` on the conversation-events topic; the number of records."""
    records = [
        (str(e.conversation_id), e.model_dump_json().encode()) for s in scripts for e in s.events
    ]
    await produce(broker.bootstrap, topics.conversation_events, records)
    return len(records)
