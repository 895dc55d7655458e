"""The router's rows as Python values: the conversation, its messages, claims and stored
answers, and how each is read from a row of ``router.*`` (the column lists the statements
select). The statements themselves are in ``store.py`` and ``intake_store.py``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from services.router.routing.classify import Classification
from services.router.routing.select import AgentView
from shared.events import AgentStatus, Attachment, Channel, CustomerTier, Priority, Skill

# A conversation's state as answers show it (``Conversation.shown_state``).
ShownState = Literal["queued", "offered", "assigned", "resolved"]

MESSAGE_COLUMNS = (
    "id, conversation_id, direction, author, text, channel_message_id, sent_at, created_at, "
    "attachments, edit_of"
)


@dataclass(frozen=True)
class Claim:
    """Whether a conditional update took, and the team of the agent it gave the work to."""

    done: bool
    team: str | None = None


def claim_of(row: Any) -> Claim:
    return Claim(True, row[0]) if row is not None else Claim(False)


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


CONVERSATION_COLUMNS = """
    id, conversation_key, channel, customer_id, customer_tier, state, priority, skill, language,
    rules_fired, agent_id, opened_at, queued_at, assigned_at, first_response_at, resolved_at,
    category, min_level, team, offered_at, accepted_at, escalated_at, excluded_agents,
    last_agent_id, reopened, group_name, overflow_stage, fallback_languages, overflow_team,
    stuck_since
"""


def conversation_of(row: Any) -> Conversation:
    m = row._mapping
    return Conversation(
        id=m["id"],
        conversation_key=m["conversation_key"],
        channel=Channel(m["channel"]),
        customer_id=m["customer_id"],
        customer_tier=CustomerTier(m["customer_tier"]),
        state=m["state"],
        priority=Priority(m["priority"]),
        skill=Skill(m["skill"]),
        language=m["language"],
        rules_fired=tuple(m["rules_fired"]),
        agent_id=m["agent_id"],
        opened_at=m["opened_at"],
        queued_at=m["queued_at"],
        assigned_at=m["assigned_at"],
        first_response_at=m["first_response_at"],
        resolved_at=m["resolved_at"],
        category=m["category"],
        min_level=m["min_level"],
        team=m["team"],
        offered_at=m["offered_at"],
        accepted_at=m["accepted_at"],
        escalated_at=m["escalated_at"],
        excluded_agents=tuple(m["excluded_agents"]),
        last_agent_id=m["last_agent_id"],
        reopened=m["reopened"],
        group_name=m["group_name"],
        overflow_stage=m["overflow_stage"],
        fallback_languages=tuple(m["fallback_languages"]),
        overflow_team=m["overflow_team"],
        stuck_since=m["stuck_since"],
    )


def agent_view_of(row: Any) -> AgentView:
    m = row._mapping
    return AgentView(
        id=m["id"],
        status=AgentStatus(m["status"]),
        skills=dict(m["skills"]),
        languages=frozenset(m["languages"]),
        capacity=dict(m["capacity"]),
        load=dict(m["load"]),
        last_assigned_at=m["last_assigned_at"],
        team=m["team"],
        max_load=m["max_load"],
    )


@dataclass(frozen=True)
class FirstMessage:
    """The customer's message that opens a conversation (its author is the customer)."""

    message_id: uuid.UUID
    text: str
    channel_message_id: str | None
    sent_at: datetime | None
    attachments: Sequence[Attachment] = ()
    edit_of: uuid.UUID | None = None


def attachments_json(attachments: Sequence[Attachment]) -> str | None:
    """A message's attachments as stored (a JSON array of their set fields); None (NULL)
    when it has none, which is most messages."""
    if not attachments:
        return None
    return json.dumps([a.model_dump(mode="json", exclude_none=True) for a in attachments])


def stored_message_of(row: Any) -> StoredMessage:
    m = row._mapping
    return StoredMessage(
        id=m["id"],
        conversation_id=m["conversation_id"],
        direction=m["direction"],
        author=m["author"],
        text=m["text"],
        sent_at=m["sent_at"],
        created_at=m["created_at"],
        delivery_status=m["delivery_status"],
        delivery_detail=m["delivery_detail"],
        attachments=tuple(map(Attachment.model_validate, m["attachments"] or ())),
        edit_of=m["edit_of"],
    )
