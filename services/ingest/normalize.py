"""The generic inbound message as integrators post it, and its normalized event."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from services.ingest.channels.base import Incoming
from shared.events import Channel, Customer, CustomerTier


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CustomerIn(_Strict):
    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    tier: CustomerTier = CustomerTier.STANDARD
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class MessageIn(_Strict):
    """A message posted to the generic endpoint."""

    channel: Channel
    channel_message_id: str = Field(min_length=1, max_length=256)
    conversation_ref: str = Field(min_length=1, max_length=256)
    customer: CustomerIn
    text: str = Field(min_length=1, max_length=20_000)
    sent_at: AwareDatetime | None = None
    category: str | None = Field(
        default=None, max_length=100, description="the category the customer chose on a form"
    )

    @field_validator("text")
    @classmethod
    def _printable(cls, text: str) -> str:
        if "\x00" in text:
            raise ValueError("text must not contain NUL characters")
        return text


class Accepted(BaseModel):
    message_id: uuid.UUID
    conversation_key: str


def to_incoming(message: MessageIn) -> Incoming:
    """The generic message as an adapter-neutral incoming message."""
    return Incoming(
        channel=message.channel,
        channel_message_id=message.channel_message_id,
        conversation_ref=message.conversation_ref,
        customer=Customer(**message.customer.model_dump()),
        text=message.text,
        sent_at=message.sent_at,
        category=message.category,
    )
