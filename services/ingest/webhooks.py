"""Channel routes: each provider's native webhook, and our own chat widget and web form.
A route checks the caller, parses the provider's payload, and publishes every customer message
in it (a provider's retry yields the same message ids, so the router applies it once). A
delivery that is authenticated and parses as a whole is answered 2xx: an item in it that cannot
be read is dead-lettered alone, one that is no customer message is ignored, both counted."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError

from services.ingest.api import InboundPublisher, PublisherDep
from services.ingest.channels import email, meta, telegram, web, x
from services.ingest.channels.base import (
    Incoming,
    UnstorableText,
    check_shared_token,
    check_signature,
    require_secret,
    sha256_b64_signature,
    sha256_hex_signature,
    to_event,
)
from services.ingest.channels.outcomes import Ignored, Outcome, Unreadable
from services.ingest.settings import IngestSettings
from shared.auth import INGEST, PrincipalDep
from shared.events import Channel, DeadLetter, InboundMessage
from shared.problems import BadRequest, Forbidden, Problem, ServiceUnavailable

router = APIRouter(prefix="/v1/channels", tags=["channels"])
M = TypeVar("M", bound=BaseModel)


class Unprocessable(Problem):
    status, title = 422, "Unprocessable Content"


class DeliveryOut(BaseModel):
    accepted: int
    message_ids: list[str]
    ignored: str | None = None  # why a delivery opened nothing (auto-reply, bounce)
    # Items of the delivery that published nothing: not customer messages (statuses, echoes,
    # bots), and customer items that could not be read, dead-lettered with the reason.
    ignored_items: int = 0
    dead_lettered: int = 0


class TicketOut(BaseModel):
    ticket: str
    message_id: str
    conversation_key: str


def _settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


def _parse(model: type[M], body: bytes, what: str) -> M:
    """Parse a provider's JSON body, or a 422 that says what is wrong with it."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise Unprocessable(f"not a valid {what}: {problems}") from exc


async def _publish(publisher: InboundPublisher, items: list[Incoming]) -> DeliveryOut:
    received_at = datetime.now(UTC)
    events = [to_event(i, received_at=received_at) for i in items]
    await publisher.publish_many(events)
    return DeliveryOut(accepted=len(events), message_ids=[str(e.message_id) for e in events])


async def _deliver(
    request: Request, publisher: InboundPublisher, outcomes: list[Outcome]
) -> DeliveryOut:
    """Publish a delivery's readable messages and dead-letter its unreadable ones, each on
    its own; ignored items are counted. 2xx once the broker has them all, so the provider
    stops retrying; 503 (it retries, and ids repeat) when the broker does not answer."""
    received_at = datetime.now(UTC)
    events: list[InboundMessage] = []
    ignored: list[Ignored] = []
    unreadable: list[Unreadable] = []
    for outcome in outcomes:
        if isinstance(outcome, Incoming):
            try:
                events.append(to_event(outcome, received_at=received_at))
            except UnstorableText as exc:
                unreadable.append(
                    Unreadable(outcome.channel, "unstorable_text", exc.detail, asdict(outcome))
                )
        elif isinstance(outcome, Ignored):
            ignored.append(outcome)
        else:
            unreadable.append(outcome)
    if events:
        await publisher.publish_many(events)
    if unreadable:
        await _dead_letter(publisher, _settings(request).topics.dead_letter, unreadable)
    skipped = _skipped(request)
    skipped.update((i.channel.value, "ignored", i.reason) for i in ignored)
    skipped.update((u.channel.value, "dead_lettered", u.reason) for u in unreadable)
    return DeliveryOut(
        accepted=len(events),
        message_ids=[str(e.message_id) for e in events],
        ignored_items=len(ignored),
        dead_lettered=len(unreadable),
    )


def _skipped(request: Request) -> Counter[tuple[str, str, str]]:
    """The counts /metrics/service exposes (shared.telemetry reads them at scrape time)."""
    counts: Counter[tuple[str, str, str]] | None = getattr(request.app.state, "skipped_items", None)
    if counts is None:
        counts = request.app.state.skipped_items = Counter()
    return counts


async def _dead_letter(
    publisher: InboundPublisher, topic: str, unreadable: list[Unreadable]
) -> None:
    """Each unreadable item to the dead-letter topic with its reason, acknowledged. A webhook
    has no source topic: ``source_topic`` names the webhook, partition and offset are -1."""
    now = datetime.now(UTC)
    letters = [
        DeadLetter(
            source_topic=f"webhook:{u.channel.value}",
            source_partition=-1,
            source_offset=-1,
            consumer_group="ingest",
            key=u.channel.value,
            value=u.item_json(),
            reason=f"{u.reason}: {u.detail}",
            dead_lettered_at=now,
        )
        for u in unreadable
    ]
    try:
        async with asyncio.timeout(publisher.timeout):
            sent = [
                await publisher.producer.send(
                    topic, letter.model_dump_json().encode(), key=(letter.key or "").encode()
                )
                for letter in letters
            ]
            await asyncio.gather(*sent)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise ServiceUnavailable(
            f"message broker did not acknowledge the dead letters ({type(exc).__name__}); "
            "retry later",
            retry_after=publisher.retry_after,
        ) from exc


# ---------------------------------------------------------------- Telegram


@router.post("/telegram/webhook", response_model=DeliveryOut)
async def telegram_webhook(
    request: Request,
    publisher: PublisherDep,
    secret: Annotated[str | None, Header(alias=telegram.SECRET_HEADER)] = None,
) -> DeliveryOut:
    """Telegram Bot API ``Update`` (set as the bot's webhook with the same secret token): its
    message published, dead-lettered if unreadable, or ignored; 200 for any update."""
    configured = require_secret(_settings(request).telegram_secret_token, "Telegram")
    check_shared_token(configured, secret, telegram.SECRET_HEADER)
    update = _parse(telegram.Update, await request.body(), "Telegram Update")
    return await _deliver(request, publisher, telegram.read_update(update))


# ---------------------------------------------------------------- WhatsApp and Messenger


def _meta_handshake(
    request: Request, mode: str | None, token: str | None, challenge: str | None
) -> PlainTextResponse:
    configured = require_secret(_settings(request).meta_verify_token, "Meta")
    if mode != "subscribe" or not challenge:
        raise BadRequest("expected hub.mode=subscribe and a hub.challenge")
    if token is None or not _equal(configured, token):
        raise Forbidden("hub.verify_token does not match")
    return PlainTextResponse(challenge)


def _equal(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


async def _meta_delivery(request: Request, signature: str | None, obj: str) -> meta.Notification:
    secret = require_secret(_settings(request).meta_app_secret, "Meta")
    body = await request.body()
    check_signature(sha256_hex_signature(secret, body), signature, meta.SIGNATURE_HEADER)
    notification = _parse(meta.Notification, body, "Meta webhook notification")
    if notification.object != obj:
        raise Unprocessable(f"expected object {obj!r}, got {notification.object!r}")
    return notification


HubMode = Annotated[str | None, Query(alias="hub.mode")]
HubToken = Annotated[str | None, Query(alias="hub.verify_token")]
HubChallenge = Annotated[str | None, Query(alias="hub.challenge", max_length=200)]
HubSignature = Annotated[str | None, Header(alias=meta.SIGNATURE_HEADER)]


@router.get("/whatsapp/webhook", response_class=PlainTextResponse)
@router.get("/messenger/webhook", response_class=PlainTextResponse)
async def meta_verify(
    request: Request, mode: HubMode = None, token: HubToken = None, challenge: HubChallenge = None
) -> PlainTextResponse:
    """Meta's verification handshake (WhatsApp and Messenger alike): echo hub.challenge when
    the verify token matches."""
    return _meta_handshake(request, mode, token, challenge)


@router.post("/whatsapp/webhook", response_model=DeliveryOut)
async def whatsapp_webhook(
    request: Request, publisher: PublisherDep, signature: HubSignature = None
) -> DeliveryOut:
    """WhatsApp Cloud API notifications: each message published, or dead-lettered alone if
    unreadable; statuses are accepted and ignored."""
    notification = await _meta_delivery(request, signature, "whatsapp_business_account")
    return await _deliver(request, publisher, meta.read_whatsapp(notification))


@router.post("/messenger/webhook", response_model=DeliveryOut)
async def messenger_webhook(
    request: Request, publisher: PublisherDep, signature: HubSignature = None
) -> DeliveryOut:
    """Messenger Page notifications; echoes, deliveries and reads are accepted and ignored."""
    notification = await _meta_delivery(request, signature, "page")
    return await _deliver(request, publisher, meta.read_messenger(notification))


# ---------------------------------------------------------------- X


@router.get("/x/webhook")
async def x_crc(request: Request, crc_token: Annotated[str, Query()]) -> dict[str, str]:
    """The Challenge-Response Check: prove we hold the consumer secret. Only tokens shaped like
    X's are answered, since the answer is also the signature of a body equal to the token."""
    secret = require_secret(_settings(request).x_consumer_secret, "X")
    if not x.is_crc_token(crc_token):
        raise BadRequest(f"crc_token must be {x.CRC_TOKEN_SHAPE}, as X sends it")
    return {"response_token": sha256_b64_signature(secret, crc_token.encode())}


@router.post("/x/webhook", response_model=DeliveryOut)
async def x_webhook(
    request: Request,
    publisher: PublisherDep,
    signature: Annotated[str | None, Header(alias=x.SIGNATURE_HEADER)] = None,
) -> DeliveryOut:
    """Account Activity deliveries: direct messages to the account."""
    secret = require_secret(_settings(request).x_consumer_secret, "X")
    body = await request.body()
    check_signature(sha256_b64_signature(secret, body), signature, x.SIGNATURE_HEADER)
    delivery = _parse(x.Delivery, body, "Account Activity delivery")
    return await _deliver(request, publisher, x.read_delivery(delivery))


# ---------------------------------------------------------------- our own: chat and form


@router.post("/chat/messages", status_code=202, response_model=DeliveryOut)
async def chat_message(
    message: web.ChatMessageIn, principal: PrincipalDep, publisher: PublisherDep
) -> DeliveryOut:
    """A message from the live-chat widget, relayed by the integrator's backend."""
    principal.require(INGEST)
    return await _publish(publisher, [web.read_chat(message)])


@router.post("/form/tickets", status_code=202, response_model=TicketOut)
async def form_ticket(
    form: web.FormIn, principal: PrincipalDep, publisher: PublisherDep
) -> TicketOut:
    """A web-form ticket; answers with the ticket number the customer can quote."""
    principal.require(INGEST)
    incoming = web.read_form(form)
    out = await _publish(publisher, [incoming])
    assert incoming.ticket is not None
    return TicketOut(
        ticket=incoming.ticket,
        message_id=out.message_ids[0],
        conversation_key=f"form:{incoming.conversation_ref}",
    )


# ---------------------------------------------------------------- email


# The route reads its body itself (two content types); this describes it in the OpenAPI schema.
_EMAIL_BODY = {
    "required": True,
    "description": "A raw RFC 5322 message, or an email provider's inbound-parse form post "
    "(SendGrid's shape). Body up to SWITCHBOARD_MAX_BODY_BYTES (256 KiB). See docs/channels.md, "
    "'Email'.",
    "content": {
        "message/rfc822": {
            "schema": {"type": "string", "format": "binary"},
            "example": "From: Mei <mei@example.com>\r\nTo: support@desk.example\r\n"
            "Subject: Deposit not credited\r\nMessage-ID: <a1@example.com>\r\n\r\n"
            "I sent 0.5 BTC three hours ago.\r\n",
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "email": {
                        "type": "string",
                        "format": "binary",
                        "description": "the whole raw message; when present the other fields "
                        "are not read",
                    },
                    "headers": {
                        "type": "string",
                        "description": "the message's raw headers (Message-ID, In-Reply-To, "
                        "References thread it; Auto-Submitted and the like mark auto-replies)",
                    },
                    "from": {"type": "string", "description": "From, if not in headers"},
                    "to": {"type": "string", "description": "To, if not in headers"},
                    "subject": {"type": "string", "description": "Subject, if not in headers"},
                    "text": {"type": "string", "description": "the plain-text body"},
                    "html": {
                        "type": "string",
                        "description": "the HTML body, read as text when there is no text field",
                    },
                    "charsets": {
                        "type": "string",
                        "description": 'JSON: each field\'s charset, e.g. {"text": "gb2312"} '
                        "(UTF-8 when not named)",
                    },
                },
                "additionalProperties": {
                    "type": "string",
                    "format": "binary",
                    "description": "attachments (any part with a filename), kept as metadata",
                },
            },
        },
    },
}


@router.post(
    "/email/inbound", response_model=DeliveryOut, openapi_extra={"requestBody": _EMAIL_BODY}
)
async def email_inbound(
    request: Request, principal: PrincipalDep, publisher: PublisherDep
) -> DeliveryOut:
    """An inbound email: raw ``message/rfc822``, or an email provider's multipart/form-data
    inbound parse post. Auto-replies and bounces are accepted and open nothing."""
    principal.require(INGEST)
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    try:
        if content_type.startswith("message/rfc822"):
            incoming = email.parse_raw(body)
        else:
            incoming = email.parse_inbound_form(content_type, body)
    except email.AutoReply:
        _skipped(request)[(Channel.EMAIL.value, "ignored", "auto_reply")] += 1
        return DeliveryOut(
            accepted=0, message_ids=[], ignored="auto-reply or bounce", ignored_items=1
        )
    except (email.NotAnEmail, ValueError, UnicodeError) as exc:
        raise Unprocessable(f"not a readable email: {exc}") from exc
    return await _publish(publisher, [incoming])
