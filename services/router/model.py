"""The router's domain types as plain values: a conversation, its messages, the routing
policy, and what conditional writes and idempotency keys answer. No SQL and no I/O here: the
stores read and write these (``rows.py`` decodes rows into them), the pure core
(``routing/``) and the use cases compute with them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from services.router.routing.classify import Classification
from shared.events import Attachment, Channel, CustomerTier, Priority, Skill

# A conversation's state as answers show it (``Conversation.shown_state``).
ShownState = Literal["queued", "offered", "assigned", "resolved"]


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    conversation_key: str
    channel: Channel
    customer_id: str
    customer_tier: CustomerTier
    state: str
    priority: Priority
    skill: Skill
    language: str
    rules_fired: tuple[str, ...]
    agent_id: str | None
    opened_at: datetime
    queued_at: datetime | None
    assigned_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    category: str | None = None
    min_level: int = 1
    team: str | None = None
    offered_at: datetime | None = None
    accepted_at: datetime | None = None
    escalated_at: datetime | None = None
    excluded_agents: tuple[str, ...] = ()
    last_agent_id: str | None = None
    reopened: int = 0
    group_name: str | None = None  # a group chat's title or id, as its latest message named it
    # Overflow (routing/overflow.py): stages gone through, languages and team widened to, and
    # since when it is stuck (its last stage applied).
    overflow_stage: int = 0
    fallback_languages: tuple[str, ...] = ()
    overflow_team: str | None = None
    stuck_since: datetime | None = None

    @property
    def classification(self) -> Classification:
        return Classification(
            self.priority, self.skill, self.language, self.rules_fired, self.min_level, self.team
        )

    @property
    def shown_state(self) -> ShownState:
        """The state as the API shows it: an assignment the agent has not accepted yet is
        ``offered``. Stored, an offer is ``assigned`` with ``accepted_at`` null: it holds the
        agent's slot like any assignment, so every invariant, index and plan on ``state`` is
        the same for both."""
        if self.state == "assigned" and self.accepted_at is None:
            return "offered"
        return cast(ShownState, self.state)  # the table's CHECK: queued, assigned, resolved


@dataclass(frozen=True)
class StoredMessage:
    id: uuid.UUID
    conversation_id: uuid.UUID
    direction: str
    author: str
    text: str
    sent_at: datetime | None
    created_at: datetime
    delivery_status: str | None = None
    delivery_detail: str | None = None
    attachments: tuple[Attachment, ...] = ()
    edit_of: uuid.UUID | None = None


@dataclass(frozen=True)
class MessagePage:
    """Messages oldest first, and the number to page from (``before``) when there are
    earlier ones."""

    messages: list[StoredMessage]
    earlier: int | None


@dataclass(frozen=True)
class StoredAnswer:
    """What an idempotency key's first request was (as a digest) and was answered."""

    fingerprint: str
    status: int
    body: Any


@dataclass(frozen=True)
class FirstMessage:
    """The customer's message that opens a conversation (its author is the customer)."""

    message_id: uuid.UUID
    text: str
    channel_message_id: str | None
    sent_at: datetime | None
    attachments: Sequence[Attachment] = ()
    edit_of: uuid.UUID | None = None


@dataclass(frozen=True)
class Claim:
    """Whether a conditional update took, and the team of the agent it gave the work to."""

    done: bool
    team: str | None = None


@dataclass(frozen=True)
class Policy:
    """Routing settings that are not rules: offers, reopening, leaving."""

    offer_timeout_s: dict[Channel, float] = field(default_factory=dict)
    max_missed_offers: int = 3
    reopen_window: timedelta = timedelta(days=1)
    reroute_answered_on_leave: bool = False

    def needs_acceptance(self, channel: Channel) -> bool:
        return channel in self.offer_timeout_s
