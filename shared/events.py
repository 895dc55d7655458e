"""The contract between services: every event on every topic, versioned, as pydantic models.

Consumers ignore fields they do not know (``extra="ignore"``) and dead-letter what they cannot
parse. Event ids are derived from what the event is about, so a republished event keeps its id
and consumers can deduplicate on it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter


class Channel(StrEnum):
    CHAT = "chat"
    EMAIL = "email"
    FORM = "form"
    TELEGRAM = "telegram"
    MESSENGER = "messenger"
    WHATSAPP = "whatsapp"
    X = "x"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for the most urgent; lower ranks are served first."""
        return _PRIORITY_ORDER.index(self)

    def raised(self) -> Priority:
        """One level more urgent (urgent stays urgent)."""
        return _PRIORITY_ORDER[max(self.rank - 1, 0)]


_PRIORITY_ORDER = [Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW]


class Skill(StrEnum):
    SECURITY = "security"
    FUNDS = "funds"
    TRADING = "trading"
    API = "api"
    ACCOUNT = "account"
    GENERAL = "general"


class CustomerTier(StrEnum):
    STANDARD = "standard"
    VIP = "vip"


class AgentStatus(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Customer(_Model):
    id: str
    name: str | None = None
    tier: CustomerTier = CustomerTier.STANDARD
    language: str | None = None


class Attachment(_Model):
    """What a customer attached, as metadata: the content stays with the provider."""

    name: str | None = None
    content_type: str | None = None
    size: int | None = None
    ref: str | None = None  # the provider's id or URL for the file
    # What it is when that is more than a file: voice, audio, video, video_note, sticker,
    # location (ref: a geo: URI), contact (ref: a tel: URI), poll, photo, document.
    kind: str | None = None


class Event(_Model):
    """Fields every event carries."""

    event_id: uuid.UUID
    version: Literal[1] = 1
    occurred_at: AwareDatetime


# ---------------------------------------------------------------- inbound messages


class InboundMessage(Event):
    """A customer's message, normalized by ingest. ``occurred_at`` is ingest's receive time,
    the clock of record; ``sent_at`` is the provider's own timestamp, kept for display."""

    type: Literal["message.inbound"] = "message.inbound"
    message_id: uuid.UUID
    channel: Channel
    channel_message_id: str
    conversation_key: str
    customer: Customer
    text: str
    sent_at: AwareDatetime | None = None
    # The category the customer chose on a web form, if any (a classification input).
    category: str | None = None
    subject: str | None = None
    attachments: list[Attachment] = []
    # A human-readable reference the customer can quote (web form tickets).
    ticket: str | None = None
    # What the router classifies when it differs from ``text`` (email: the subject and the
    # new part of a reply, without quotes and signature); ``text`` stays whole for the agent.
    text_for_routing: str | None = None
    # An edit: the message_id of the message it edits (same conversation); ``text`` is the
    # edited text. The router applies it as a message of its own, as every edit always was.
    edit_of: uuid.UUID | None = None
    # A group chat (Telegram group, WhatsApp group): its title or id. The conversation is the
    # group's, the customer is the member who wrote, and replies go to the whole group.
    group: str | None = None


# ---------------------------------------------------------------- conversation events
# The conversation-events topic: written by the router only, through its outbox.


class ConversationEvent(Event):
    conversation_id: uuid.UUID
    channel: Channel


class ConversationOpened(ConversationEvent):
    type: Literal["conversation.opened"] = "conversation.opened"
    conversation_key: str
    customer_id: str
    customer_tier: CustomerTier


class MessageReceived(ConversationEvent):
    type: Literal["conversation.message_received"] = "conversation.message_received"
    message_id: uuid.UUID


class Classified(ConversationEvent):
    type: Literal["conversation.classified"] = "conversation.classified"
    priority: Priority
    skill: Skill
    language: str
    rules_fired: list[str]
    corrected_by: str | None = None
    # Who acted for the agent (a desk credential's name, or ops'), when not the agent itself.
    acted_by: str | None = None


class Queued(ConversationEvent):
    """Waiting for an agent: when opened with nobody eligible, or put back (``reason``)."""

    type: Literal["conversation.queued"] = "conversation.queued"
    priority: Priority
    skill: Skill
    language: str
    reason: str | None = None


class Offered(ConversationEvent):
    """Given to an agent who must accept within the channel's offer timeout."""

    type: Literal["conversation.offered"] = "conversation.offered"
    agent_id: str
    expires_at: AwareDatetime


class OfferTimedOut(ConversationEvent):
    type: Literal["conversation.offer_timed_out"] = "conversation.offer_timed_out"
    agent_id: str


class Transferred(ConversationEvent):
    """Moved by an agent to another agent or to another skill's queue."""

    type: Literal["conversation.transferred"] = "conversation.transferred"
    from_agent_id: str
    to_agent_id: str | None = None
    to_skill: Skill | None = None
    reason: str
    # Who acted for the agent (a desk credential's name, or ops'), when not the agent itself.
    acted_by: str | None = None


class Escalated(ConversationEvent):
    """Waiting near its first-response target: now open to lower skill levels / other teams."""

    type: Literal["conversation.escalated"] = "conversation.escalated"
    waited_s: float
    target_s: float


class Overflowed(ConversationEvent):
    """Waited the ``after_s`` of an overflow stage of the rules file without an agent: its need
    is widened (cumulative, with the stages before): agents speaking one of
    ``fallback_languages`` may take it too, ``skill`` (at ``min_level``) is the skill it needs
    now, and the agents of ``team`` may take it whatever their skills. ``final``: it was the
    conversation's last stage; still waiting after it, the conversation is stuck."""

    type: Literal["conversation.overflowed"] = "conversation.overflowed"
    stage: str  # the stage's id in the rules file (recorded as overflow.<id> in rules_fired)
    priority: Priority
    waited_s: float
    fallback_languages: list[str]
    skill: Skill
    min_level: int
    team: str | None = None
    final: bool


class Reopened(ConversationEvent):
    """The customer wrote again within the reopen window after it was resolved."""

    type: Literal["conversation.reopened"] = "conversation.reopened"
    message_id: uuid.UUID
    last_agent_id: str | None


class Assigned(ConversationEvent):
    """The agent's from now on: given on a channel without offers, or an offer accepted."""

    type: Literal["conversation.assigned"] = "conversation.assigned"
    agent_id: str
    team: str | None = None  # the agent's team when assigned (reports slice by it)
    # An offer accepted for the agent: who acted for it (a desk credential's name).
    acted_by: str | None = None
    # The offer this accepts (its conversation.offered's time); null: given without one.
    offered_at: AwareDatetime | None = None


class AgentReplied(ConversationEvent):
    type: Literal["conversation.agent_replied"] = "conversation.agent_replied"
    agent_id: str
    message_id: uuid.UUID
    # Who acted for the agent (a desk credential's name, or ops'), when not the agent itself.
    acted_by: str | None = None


class Resolved(ConversationEvent):
    type: Literal["conversation.resolved"] = "conversation.resolved"
    agent_id: str
    # Who acted for the agent (a desk credential's name, or ops'), when not the agent itself.
    acted_by: str | None = None


_CONVERSATION_EVENTS = (
    ConversationOpened,
    MessageReceived,
    Classified,
    Queued,
    Offered,
    OfferTimedOut,
    Assigned,
    Transferred,
    Escalated,
    Overflowed,
    AgentReplied,
    Resolved,
    Reopened,
)
AnyConversationEvent = Annotated[
    ConversationOpened
    | MessageReceived
    | Classified
    | Queued
    | Offered
    | OfferTimedOut
    | Assigned
    | Transferred
    | Escalated
    | Overflowed
    | AgentReplied
    | Resolved
    | Reopened,
    Field(discriminator="type"),
]
conversation_event_adapter: TypeAdapter[AnyConversationEvent] = TypeAdapter(AnyConversationEvent)
CONVERSATION_EVENT_TYPES = frozenset(
    cls.model_fields["type"].default for cls in _CONVERSATION_EVENTS
)


# ---------------------------------------------------------------- delivery statuses
# The delivery-events topic: written by ingest's reply dispatcher only, once the provider
# answered; the router records them on the reply.


class ReplyDelivered(ConversationEvent):
    """The channel's provider accepted an agent's reply."""

    type: Literal["conversation.reply_delivered"] = "conversation.reply_delivered"
    message_id: uuid.UUID
    attempts: int


class ReplyFailed(ConversationEvent):
    """An agent's reply could not be delivered (the provider refused it, or retries ran out)."""

    type: Literal["conversation.reply_failed"] = "conversation.reply_failed"
    message_id: uuid.UUID
    attempts: int
    reason: str


AnyDeliveryEvent = Annotated[ReplyDelivered | ReplyFailed, Field(discriminator="type")]
delivery_event_adapter: TypeAdapter[AnyDeliveryEvent] = TypeAdapter(AnyDeliveryEvent)


# ---------------------------------------------------------------- SLA marks
# The sla-events topic: written by metrics only, through its outbox, when its SLA sweep marks
# a conversation's first-response target as 80% used (at risk) or passed (breached).


class SlaAtRisk(ConversationEvent):
    """A live conversation used 80% of its first-response target."""

    type: Literal["conversation.sla_at_risk"] = "conversation.sla_at_risk"
    priority: Priority | None
    target_s: float
    elapsed_s: float


class SlaBreached(ConversationEvent):
    """A live conversation passed its first-response target."""

    type: Literal["conversation.sla_breached"] = "conversation.sla_breached"
    priority: Priority | None
    target_s: float
    elapsed_s: float


AnySlaEvent = Annotated[SlaAtRisk | SlaBreached, Field(discriminator="type")]
sla_event_adapter: TypeAdapter[AnySlaEvent] = TypeAdapter(AnySlaEvent)


# ---------------------------------------------------------------- agents and outbound


class AgentStatusChanged(Event):
    """An agent's presence changed: set by the agent, by ops or a desk for it (``acted_by``),
    or by the router (``reason``: ``presence_timeout`` when its frontend was not heard from,
    ``missed_offers``)."""

    type: Literal["agent.status_changed"] = "agent.status_changed"
    agent_id: str
    status: AgentStatus
    reason: str | None = None
    # Who acted for the agent (a desk credential's name, or ops'), when not the agent itself.
    acted_by: str | None = None


class AgentProfileChanged(Event):
    """An agent was created or updated: what reports and live views need of it."""

    type: Literal["agent.profile_changed"] = "agent.profile_changed"
    agent_id: str
    name: str
    team: str | None = None
    capacity: dict[str, int] = {}
    max_load: int | None = None


AnyAgentEvent = Annotated[AgentStatusChanged | AgentProfileChanged, Field(discriminator="type")]
agent_event_adapter: TypeAdapter[AnyAgentEvent] = TypeAdapter(AnyAgentEvent)
AGENT_EVENT_TYPES = frozenset(
    cls.model_fields["type"].default for cls in (AgentStatusChanged, AgentProfileChanged)
)


class OutboundReply(Event):
    """An agent's reply for ingest's channel adapters to deliver to the customer."""

    type: Literal["reply.outbound"] = "reply.outbound"
    conversation_id: uuid.UUID
    conversation_key: str
    channel: Channel
    message_id: uuid.UUID
    agent_id: str
    text: str
    customer_id: str | None = None


# ---------------------------------------------------------------- dead letters


class DeadLetter(_Model):
    """A record a consumer could not apply, with where it came from and why."""

    type: Literal["dead_letter"] = "dead_letter"
    source_topic: str
    source_partition: int
    source_offset: int
    consumer_group: str
    key: str | None
    value: str
    reason: str
    dead_lettered_at: datetime
