"""The conversation events the router emits, built from a conversation and what happened to it
(one definition for the one-at-a-time handlers and the batch planner). Each event's id is
derived from what it is about, so a republished event keeps its id."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.router.model import Conversation
from shared.events import (
    Assigned,
    Classified,
    ConversationOpened,
    InboundMessage,
    MessageReceived,
    Offered,
    Queued,
    Reopened,
)
from shared.ids import derived_id


def opened(conv: Conversation, message: InboundMessage) -> ConversationOpened:
    return ConversationOpened(
        event_id=derived_id("opened", conv.id),
        occurred_at=message.occurred_at,
        conversation_id=conv.id,
        channel=conv.channel,
        conversation_key=conv.conversation_key,
        customer_id=conv.customer_id,
        customer_tier=conv.customer_tier,
    )


def received(conv: Conversation, message: InboundMessage) -> MessageReceived:
    return MessageReceived(
        event_id=derived_id("message_received", message.message_id),
        occurred_at=message.occurred_at,
        conversation_id=conv.id,
        channel=conv.channel,
        message_id=message.message_id,
    )


def classified(
    conv: Conversation,
    cause: object,
    now: datetime,
    corrected_by: str | None = None,
    acted_by: str | None = None,
) -> Classified:
    return Classified(
        event_id=derived_id("classified", conv.id, cause),
        occurred_at=now,
        conversation_id=conv.id,
        channel=conv.channel,
        priority=conv.priority,
        skill=conv.skill,
        language=conv.language,
        rules_fired=list(conv.rules_fired),
        corrected_by=corrected_by,
        acted_by=acted_by,
    )


def reopened(conv: Conversation, message: InboundMessage, last_agent: str | None) -> Reopened:
    return Reopened(
        event_id=derived_id("reopened", message.message_id),
        occurred_at=message.occurred_at,
        conversation_id=conv.id,
        channel=conv.channel,
        message_id=message.message_id,
        last_agent_id=last_agent,
    )


def queued(conv: Conversation, now: datetime, reason: str | None) -> Queued:
    return Queued(
        event_id=derived_id("queued", conv.id, now.isoformat(), reason),
        occurred_at=now,
        conversation_id=conv.id,
        channel=conv.channel,
        priority=conv.priority,
        skill=conv.skill,
        language=conv.language,
        reason=reason,
    )


def offered(conv: Conversation, agent_id: str, now: datetime, timeout_s: float) -> Offered:
    return Offered(
        event_id=derived_id("offered", conv.id, agent_id, now.isoformat()),
        occurred_at=now,
        conversation_id=conv.id,
        channel=conv.channel,
        agent_id=agent_id,
        expires_at=now + timedelta(seconds=timeout_s),
    )


def assigned(
    conv: Conversation,
    agent_id: str,
    team: str | None,
    now: datetime,
    acted_by: str | None = None,
    offered_at: datetime | None = None,
) -> Assigned:
    return Assigned(
        event_id=derived_id("assigned", conv.id, agent_id, now.isoformat()),
        occurred_at=now,
        conversation_id=conv.id,
        channel=conv.channel,
        agent_id=agent_id,
        team=team,
        acted_by=acted_by,
        offered_at=offered_at,
    )
