"""The generic inbound message as integrators post it (alone or in a batch), and its
normalized event."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.ingest.channels.base import Incoming, UnstorableText, to_event
from shared.events import Channel, Customer, CustomerTier, InboundMessage


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


def parse_message(body: bytes, content_type: str | None) -> MessageIn:
    """The generic message in a request body, parsed and validated in one pass; a
    RequestValidationError (422) as FastAPI raises for a body parameter otherwise: a body
    that is not declared JSON (``application/json`` or ``application/*+json``) is not read
    as JSON."""
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    declared_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    try:
        if declared_json:
            return MessageIn.model_validate_json(body)
        return MessageIn.model_validate(body)  # refused: bytes are not an object
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


# ---------------------------------------------------------------- batches


class BatchIn(_Strict):
    """Up to ``SWITCHBOARD_BATCH_MAX_ITEMS`` generic messages in one request. Each item is
    validated on its own, so an invalid item is refused alone; the others go on."""

    messages: list[dict[str, Any]] = Field(
        min_length=1,
        description="generic messages, each as POST /v1/messages takes it",
        json_schema_extra={"items": {"$ref": "#/components/schemas/MessageIn"}},
    )


ItemStatus = Literal["accepted", "duplicate", "refused", "rate_limited"]


class ItemResult(BaseModel):
    """What became of one item of a batch. ``accepted``: the broker has it (a retry gets the
    same ``message_id``); ``duplicate``: an earlier item of this batch is the same message
    (same channel and channel_message_id), published once; ``refused``: invalid, ``reason``
    says why, nothing published; ``rate_limited``: its customer is over the per-customer rate,
    not published, retry later."""

    index: int
    status: ItemStatus
    message_id: uuid.UUID | None = None
    conversation_key: str | None = None
    reason: str | None = None


class BatchOut(BaseModel):
    accepted: int
    duplicates: int
    refused: int
    rate_limited: int
    results: list[ItemResult]


@dataclass
class ReadBatch:
    """A batch's items read: every item's result (an accepted item's stands once the broker
    acknowledges) and the events to publish, in the batch's order."""

    results: list[ItemResult]
    events: list[InboundMessage]


def read_batch(
    items: list[dict[str, Any]],
    *,
    received_at: datetime,
    over_rate: Callable[[InboundMessage], str | None],
) -> ReadBatch:
    """Validate and normalize each item on its own: an invalid one is refused with its
    reason, one whose customer is over its rate (``over_rate`` says why) is not published, and
    a repeat of an earlier item (same message id) shares that item's fate, published once."""
    results: list[ItemResult] = []
    events: list[InboundMessage] = []
    first: dict[uuid.UUID, ItemResult] = {}
    for index, item in enumerate(items):
        try:
            event = to_event(to_incoming(MessageIn.model_validate(item)), received_at=received_at)
        except ValidationError as exc:
            results.append(ItemResult(index=index, status="refused", reason=_reason(exc)))
            continue
        except UnstorableText as exc:
            results.append(ItemResult(index=index, status="refused", reason=exc.detail))
            continue
        result = ItemResult(
            index=index,
            status="accepted",
            message_id=event.message_id,
            conversation_key=event.conversation_key,
        )
        earlier = first.get(event.message_id)
        if earlier is not None:
            result.status = "duplicate" if earlier.status == "accepted" else earlier.status
            result.reason = earlier.reason
        else:
            first[event.message_id] = result
            result.reason = over_rate(event)
            if result.reason:
                result.status = "rate_limited"
            else:
                events.append(event)
        results.append(result)
    return ReadBatch(results, events)


def _reason(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()
    )
