"""The agent API's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.router import pages
from services.router.model import Conversation, MessagePage, ShownState, StoredMessage
from services.router.routing.select import AgentView
from shared.events import AgentStatus, Attachment, Channel, CustomerTier, Priority, Skill

AgentId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]
# Who acts, in an action's body: optional, since the credential says it.
Actor = Annotated[
    AgentId | None,
    Field(
        description="the agent acting: optional with an agent's own credential (it must be "
        "that agent's when given, else 403); required with a desk credential, which acts for "
        "the agent named here (else 422)"
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AgentIn(_In):
    name: str = Field(min_length=1, max_length=200)
    skills: dict[Skill, Annotated[int, Field(ge=1, le=5)]] = Field(min_length=1)
    languages: list[Annotated[str, Field(pattern=r"^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*$")]] = Field(
        min_length=1, max_length=50
    )
    capacity: dict[Channel, Annotated[int, Field(ge=0, le=1000)]] = Field(min_length=1)
    max_load: int | None = Field(
        default=None, ge=0, le=10_000, description="overall cap across channels"
    )
    team: str | None = Field(default=None, min_length=1, max_length=50, description="e.g. L1, L2")


class StatusIn(_In):
    status: AgentStatus


class ReplyIn(_In):
    agent_id: Actor = None
    text: Text


class ResolveIn(_In):
    agent_id: Actor = None


class AcceptIn(_In):
    agent_id: Actor = None


class TransferIn(_In):
    """Exactly one of ``to_agent_id`` and ``to_skill``."""

    agent_id: Actor = None
    to_agent_id: AgentId | None = None
    to_skill: Skill | None = None
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _one_target(self) -> TransferIn:
        if (self.to_agent_id is None) == (self.to_skill is None):
            raise ValueError("give exactly one of to_agent_id and to_skill")
        return self


class CorrectionIn(_In):
    """At least one of priority, skill, language."""

    agent_id: Actor = None
    priority: Priority | None = None
    skill: Skill | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")

    @model_validator(mode="after")
    def _something(self) -> CorrectionIn:
        if self.priority is None and self.skill is None and self.language is None:
            raise ValueError("give at least one of priority, skill, language")
        return self


class AgentProfileOut(BaseModel):
    """An agent as the router answers it: its profile, status and load per channel."""

    id: str
    status: AgentStatus
    skills: dict[str, int]
    languages: list[str]
    capacity: dict[str, int]
    load: dict[str, int]
    team: str | None
    max_load: int | None
    total_load: int

    @classmethod
    def of(cls, a: AgentView) -> AgentProfileOut:
        return cls(
            id=a.id,
            status=a.status,
            skills=dict(a.skills),
            languages=sorted(a.languages),
            capacity=dict(a.capacity),
            load=dict(a.load),
            team=a.team,
            max_load=a.max_load,
            total_load=a.total_load,
        )


class SkillQueueOut(BaseModel):
    """The conversations waiting for one skill and language (``GET /v1/queues``)."""

    skill: Skill
    language: str
    depth: int
    oldest_wait_s: float
    priorities: dict[Priority, int]
    overflowed: int = Field(
        default=0,
        description="of depth, those whose need an overflow stage widened (rules file, "
        "overflow): a fallback skill queues them under that skill",
    )
    stuck: int = Field(
        default=0,
        description="of depth, those still waiting after their last overflow stage",
    )


class AttachmentOut(BaseModel):
    """What the customer sent besides text, as the provider's reference to it: the media stays
    with the provider, and a frontend fetches it with ``ref`` through the provider's API."""

    kind: str | None = Field(
        description="what it is when more than a file: voice, audio, video, video_note, "
        "sticker, location, contact, poll, photo, document (null: a file, see content_type)"
    )
    ref: str | None = Field(
        description="the provider's reference: a Telegram file_id, a WhatsApp media id, a URL "
        "(Messenger, X), cid:<Content-ID> for an email's inline part, a geo: URI (locations), "
        "a tel: URI (contacts), a Telegram poll id"
    )
    name: str | None = Field(description="the file name, when the provider gives one")
    content_type: str | None = Field(description="the MIME type, when the provider gives one")
    size: int | None = Field(description="bytes, when the provider gives them")

    @classmethod
    def of(cls, a: Attachment) -> AttachmentOut:
        return cls(kind=a.kind, ref=a.ref, name=a.name, content_type=a.content_type, size=a.size)


class MessageOut(BaseModel):
    id: uuid.UUID
    direction: str
    author: str
    text: str = Field(
        description="inbound: the customer's text, the caption, or a placeholder naming what "
        "was sent when there is neither, such as [voice message 0:12]; an edit's text is the "
        "edited text"
    )
    sent_at: datetime | None
    created_at: datetime
    delivery_status: str | None = Field(description="replies: sent or failed, once known")
    delivery_detail: str | None
    attachments: list[AttachmentOut] = Field(
        description="inbound: the media the customer sent, with the provider's references "
        "(empty when none)"
    )
    edit_of: uuid.UUID | None = Field(
        description="an edit: the id of the message it edits, in this conversation (or in an "
        "earlier one of the same chat, resolved before the edit came); show the edit against "
        "it. Null: not an edit"
    )

    @classmethod
    def of(cls, m: StoredMessage) -> MessageOut:
        return cls(
            id=m.id,
            direction=m.direction,
            author=m.author,
            text=m.text,
            sent_at=m.sent_at,
            created_at=m.created_at,
            delivery_status=m.delivery_status,
            delivery_detail=m.delivery_detail,
            attachments=[AttachmentOut.of(a) for a in m.attachments],
            edit_of=m.edit_of,
        )


class ClassificationOut(BaseModel):
    priority: Priority
    skill: Skill
    language: str
    rules_fired: list[str]
    min_level: int
    team: str | None


class ConversationOut(BaseModel):
    id: uuid.UUID
    conversation_key: str
    channel: Channel
    state: ShownState = Field(
        description="queued: waiting for an agent; offered: given to agent_id (holding its "
        "slot), who must accept it (POST .../accept, a reply or resolving it) within the "
        "channel's offer timeout, else it moves on; assigned: the agent's (accepted, or given "
        "on a channel without offers); resolved"
    )
    customer_id: str
    customer_tier: CustomerTier
    classification: ClassificationOut
    agent_id: str | None
    category: str | None
    group: str | None = Field(
        description="a group chat (Telegram group or supergroup: its title; WhatsApp group: "
        "its id), as its latest message named it; replies go to the whole group, and each "
        "message's author is the member who wrote it. Null: a private conversation"
    )
    opened_at: datetime
    assigned_at: datetime | None
    accepted_at: datetime | None
    first_response_at: datetime | None
    escalated_at: datetime | None
    resolved_at: datetime | None
    reopened: int
    messages: list[MessageOut] = Field(description="the latest messages, oldest first")
    earlier_messages: str | None = Field(
        description="there are earlier messages: pass as ?before= to "
        "GET /v1/conversations/{id}/messages (null: messages starts at the first)"
    )

    @classmethod
    def of(cls, c: Conversation, page: MessagePage) -> ConversationOut:
        return cls(
            id=c.id,
            conversation_key=c.conversation_key,
            channel=c.channel,
            state=c.shown_state,
            customer_id=c.customer_id,
            customer_tier=c.customer_tier,
            classification=ClassificationOut(
                priority=c.priority,
                skill=c.skill,
                language=c.language,
                rules_fired=list(c.rules_fired),
                min_level=c.min_level,
                team=c.team,
            ),
            agent_id=c.agent_id,
            category=c.category,
            group=c.group_name,
            opened_at=c.opened_at,
            assigned_at=c.assigned_at,
            accepted_at=c.accepted_at,
            first_response_at=c.first_response_at,
            escalated_at=c.escalated_at,
            resolved_at=c.resolved_at,
            reopened=c.reopened,
            messages=[MessageOut.of(m) for m in page.messages],
            earlier_messages=_earlier(page),
        )


def _earlier(page: MessagePage) -> str | None:
    return pages.encode([page.earlier]) if page.earlier is not None else None


class MessagesOut(BaseModel):
    messages: list[MessageOut] = Field(description="oldest first")
    earlier_messages: str | None = Field(
        description="there are still earlier messages: pass as ?before= for the page before"
    )

    @classmethod
    def of(cls, page: MessagePage) -> MessagesOut:
        return cls(
            messages=[MessageOut.of(m) for m in page.messages], earlier_messages=_earlier(page)
        )


class AssignmentsOut(BaseModel):
    agent_id: str
    cursor: int = Field(description="pass as ?since= to wait for what comes after this answer")
    status: AgentStatus = Field(
        description="the agent's status when the answer was read (away after its frontend "
        "went unheard: set it online again)"
    )
    conversations: list[ConversationOut]


class HeartbeatOut(BaseModel):
    agent_id: str
    status: AgentStatus
    presence_timeout_s: float = Field(
        description="an agent online whose frontend neither long-polls nor sends a heartbeat "
        "for this long is set away (0: never)"
    )


class ReplyOut(BaseModel):
    message_id: uuid.UUID
