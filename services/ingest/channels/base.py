"""What every channel adapter shares: the provider-neutral message it produces, signature
checks, and publishing a delivery's messages."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.ingest.language import detect_language
from shared.events import Attachment, Channel, Customer, InboundMessage
from shared.ids import conversation_key_for, message_id_for
from shared.problems import Forbidden, Problem, Unauthorized
from shared.textguard import unstorable_model


class ChannelNotConfigured(Problem):
    status, title = 503, "Service Unavailable"


class UnstorableText(Problem):
    """Text PostgreSQL refuses (NUL, a lone surrogate), found after decoding: refused rather
    than accepted and dead-lettered by the router."""

    status, title = 422, "Unprocessable Content"


@dataclass(frozen=True)
class Incoming:
    """A customer message as an adapter read it from its provider's payload."""

    channel: Channel
    channel_message_id: str
    conversation_ref: str
    customer: Customer
    text: str
    sent_at: datetime | None = None
    attachments: list[Attachment] = field(default_factory=list)
    subject: str | None = None
    category: str | None = None
    ticket: str | None = None
    # Text to detect the language of, and to route on, when it differs from what the agent
    # sees (email: quoted replies and signatures stripped; subject included for routing).
    text_for_language: str | None = None
    text_for_routing: str | None = None
    # An edit: the channel_message_id of the message it edits.
    edits: str | None = None
    # A group chat's title (or id): conversation_ref names the group, not the customer.
    group: str | None = None


def to_event(incoming: Incoming, *, received_at: datetime) -> InboundMessage:
    """The inbound event, with the language detected from the text (the provider's or the
    customer's hint when the text is too short to tell); UnstorableText if it holds text
    PostgreSQL refuses."""
    message_id = message_id_for(incoming.channel, incoming.channel_message_id)
    language = detect_language(
        incoming.text_for_language or incoming.text, hint=incoming.customer.language
    )
    event = InboundMessage(
        event_id=message_id,
        occurred_at=received_at,
        message_id=message_id,
        channel=incoming.channel,
        channel_message_id=incoming.channel_message_id,
        conversation_key=conversation_key_for(incoming.channel, incoming.conversation_ref),
        customer=incoming.customer.model_copy(update={"language": language}),
        text=incoming.text,
        sent_at=incoming.sent_at,
        category=incoming.category,
        subject=incoming.subject,
        attachments=incoming.attachments,
        ticket=incoming.ticket,
        text_for_routing=incoming.text_for_routing,
        edit_of=message_id_for(incoming.channel, incoming.edits) if incoming.edits else None,
        group=incoming.group,
    )
    # The body guard saw the request; this sees what adapters decoded from it (charsets,
    # quoted-printable, MIME words), so nothing the router cannot store is ever published.
    found = unstorable_model(event, "message")
    if found:
        raise UnstorableText(f"{found}, which cannot be stored")
    return event


def from_epoch(seconds: int | float | str | None) -> datetime | None:
    """A provider's Unix timestamp (seconds) as an aware UTC datetime."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(float(seconds), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def require_secret(configured: str | None, channel: str) -> str:
    if not configured:
        raise ChannelNotConfigured(f"the {channel} channel is not configured on this service")
    return configured


def check_shared_token(configured: str, presented: str | None, header: str) -> None:
    """A provider that sends a shared secret in a header (Telegram)."""
    if presented is None:
        raise Unauthorized(f"missing {header} header")
    if not hmac.compare_digest(configured.encode(), presented.encode()):
        raise Forbidden(f"{header} does not match")


def hmac_sha256(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()


def check_signature(expected: str, presented: str | None, header: str) -> None:
    """Compare a computed signature with the presented one in constant time."""
    if not presented:
        raise Unauthorized(f"missing {header} header")
    if not hmac.compare_digest(expected.encode(), presented.strip().encode()):
        raise Forbidden(f"{header} does not match the body")


def sha256_hex_signature(secret: str, body: bytes) -> str:
    """Meta's X-Hub-Signature-256: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac_sha256(secret, body).hex()


def sha256_b64_signature(secret: str, payload: bytes) -> str:
    """X's signatures and CRC answers: ``sha256=`` + base64 HMAC-SHA256."""
    return "sha256=" + base64.b64encode(hmac_sha256(secret, payload)).decode()
