"""The agent API's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from services.router.store import Conversation, StoredMessage
from shared.events import AgentStatus, Channel, CustomerTier, Priority, Skill

AgentId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AgentIn(_In):
    name: str = Field(min_length=1, max_length=200)
    skills: dict[Skill, Annotated[int, Field(ge=1, le=5)]] = Field(min_length=1)
    languages: list[Annotated[str, Field(pattern=r"^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*$")]] = Field(
        min_length=1, max_length=50
    )
    capacity: dict[Channel, Annotated[int, Field(ge=0, le=1000)]] = Field(min_length=1)


class StatusIn(_In):
    status: AgentStatus


class ReplyIn(_In):
    agent_id: AgentId
    text: Text


class ResolveIn(_In):
    agent_id: AgentId


class AgentOut(BaseModel):
    id: str
    status: AgentStatus
    skills: dict[str, int]
    languages: list[str]
    capacity: dict[str, int]
    load: dict[str, int]


class MessageOut(BaseModel):
    id: uuid.UUID
    direction: str
    author: str
    text: str
    sent_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, m: StoredMessage) -> MessageOut:
        return cls(
            id=m.id,
            direction=m.direction,
            author=m.author,
            text=m.text,
            sent_at=m.sent_at,
            created_at=m.created_at,
        )


class ClassificationOut(BaseModel):
    priority: Priority
    skill: Skill
    language: str
    rules_fired: list[str]


class ConversationOut(BaseModel):
    id: uuid.UUID
    conversation_key: str
    channel: Channel
    state: str
    customer_id: str
    customer_tier: CustomerTier
    classification: ClassificationOut
    agent_id: str | None
    opened_at: datetime
    assigned_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    messages: list[MessageOut]

    @classmethod
    def of(cls, c: Conversation, messages: list[StoredMessage]) -> ConversationOut:
        return cls(
            id=c.id,
            conversation_key=c.conversation_key,
            channel=c.channel,
            state=c.state,
            customer_id=c.customer_id,
            customer_tier=c.customer_tier,
            classification=ClassificationOut(
                priority=c.priority,
                skill=c.skill,
                language=c.language,
                rules_fired=list(c.rules_fired),
            ),
            agent_id=c.agent_id,
            opened_at=c.opened_at,
            assigned_at=c.assigned_at,
            first_response_at=c.first_response_at,
            resolved_at=c.resolved_at,
            messages=[MessageOut.of(m) for m in messages],
        )


class AssignmentsOut(BaseModel):
    agent_id: str
    cursor: int = Field(description="pass as ?since= to wait for what comes after this answer")
    conversations: list[ConversationOut]


class ReplyOut(BaseModel):
    message_id: uuid.UUID
