"""How a reply reaches each channel's provider. Each sender turns an OutboundReply into one
call to the provider's API; base URLs and credentials are settings, so tests point them at a
local stand-in and production at the real provider."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import make_msgid

import httpx

from services.ingest.settings import IngestSettings
from shared.events import Channel, OutboundReply


class Refused(Exception):
    """The provider refused the reply (4xx): retrying would not help."""


class Unavailable(Exception):
    """The provider did not take the reply now (5xx, timeout, connection): retry later."""


class NotConfigured(Refused):
    """No credentials or URL for this channel."""


Sender = Callable[[OutboundReply], Awaitable[None]]


def _parts(reply: OutboundReply, n: int) -> list[str]:
    """The parts of a conversation key after the channel: ``whatsapp:PHONE_ID:WA_ID``."""
    parts = reply.conversation_key.split(":", n)[1:]
    if len(parts) != n:
        raise Refused(f"conversation key {reply.conversation_key!r} does not name a recipient")
    return parts


def _need(value: str | None, what: str) -> str:
    if not value:
        raise NotConfigured(f"{what} is not set")
    return value


async def _post(
    http: httpx.AsyncClient, url: str, *, json_body: object, headers: dict[str, str] | None = None
) -> None:
    try:
        answer = await http.post(url, json=json_body, headers=headers)
    except httpx.TimeoutException as exc:
        raise Unavailable(f"timed out calling {url}") from exc
    except httpx.TransportError as exc:
        raise Unavailable(f"could not reach {url}: {exc!r}") from exc
    if answer.status_code >= 500 or answer.status_code == 429:
        raise Unavailable(f"{url} answered {answer.status_code}")
    if answer.status_code >= 400:
        raise Refused(f"{url} answered {answer.status_code}: {answer.text[:300]}")


def make_senders(settings: IngestSettings, http: httpx.AsyncClient) -> dict[Channel, Sender]:
    """A sender for every channel, bound to the settings and one HTTP client."""

    async def telegram(reply: OutboundReply) -> None:
        # A business account's chat is "CHAT:business:CONNECTION": answered through it.
        chat_id, _, business = _parts(reply, 1)[0].partition(":business:")
        token = _need(settings.telegram_bot_token, "SWITCHBOARD_TELEGRAM_BOT_TOKEN")
        body = {"chat_id": chat_id, "text": reply.text}
        if business:
            body["business_connection_id"] = business
        await _post(http, f"{settings.telegram_api_base}/bot{token}/sendMessage", json_body=body)

    async def graph(node: str, body: dict[str, object]) -> None:
        """One Graph API ``messages`` call (WhatsApp and Messenger share it)."""
        token = _need(settings.meta_access_token, "SWITCHBOARD_META_ACCESS_TOKEN")
        await _post(
            http,
            f"{settings.graph_api_base}/{node}/messages",
            headers={"Authorization": f"Bearer {token}"},
            json_body=body,
        )

    async def whatsapp(reply: OutboundReply) -> None:
        phone_number_id, recipient = _parts(reply, 2)
        body: dict[str, object] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        if recipient.startswith("group:"):  # a group's conversation: the reply goes to the group
            body.update(recipient_type="group", to=recipient.removeprefix("group:"))
        elif recipient.isdigit():
            body["to"] = recipient  # a phone number (wa_id)
        else:
            body["recipient"] = recipient  # a business-scoped user id: no phone number known
        await graph(phone_number_id, {**body, "type": "text", "text": {"body": reply.text}})

    async def messenger(reply: OutboundReply) -> None:
        page_id, psid = _parts(reply, 2)
        await graph(
            page_id,
            {
                "recipient": {"id": psid},
                "messaging_type": "RESPONSE",
                "message": {"text": reply.text},
            },
        )

    async def x(reply: OutboundReply) -> None:
        _, recipient = _parts(reply, 2)
        token = _need(settings.x_access_token, "SWITCHBOARD_X_ACCESS_TOKEN")
        await _post(
            http,
            f"{settings.x_api_base}/1.1/direct_messages/events/new.json",
            headers={"Authorization": f"Bearer {token}"},
            json_body={
                "event": {
                    "type": "message_create",
                    "message_create": {
                        "target": {"recipient_id": recipient},
                        "message_data": {"text": reply.text},
                    },
                }
            },
        )

    def webhook(url: str | None, what: str) -> Sender:
        async def send(reply: OutboundReply) -> None:
            target = _need(url, what)
            body = reply.model_dump(mode="json")
            raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
            secret = settings.webhook_signing_secret or ""
            signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            await _post(
                http,
                target,
                json_body=body,
                headers={"X-Switchboard-Signature": f"sha256={signature}"},
            )

        return send

    async def email(reply: OutboundReply) -> None:
        host = _need(settings.smtp_host, "SWITCHBOARD_SMTP_HOST")
        if not reply.customer_id or not reply.customer_id.startswith("email:"):
            raise Refused("the conversation has no customer email address")
        (thread_root,) = _parts(reply, 1)
        msg = EmailMessage()
        msg["From"] = settings.smtp_from
        msg["To"] = reply.customer_id.removeprefix("email:")
        msg["Subject"] = "Re: your support request"
        msg["Message-ID"] = make_msgid(idstring=str(reply.message_id))
        msg["In-Reply-To"] = f"<{thread_root}>"
        msg["References"] = f"<{thread_root}>"
        msg.set_content(reply.text)
        await asyncio.to_thread(_smtp_send, host, settings.smtp_port, msg, settings.smtp_timeout_s)

    return {
        Channel.TELEGRAM: telegram,
        Channel.WHATSAPP: whatsapp,
        Channel.MESSENGER: messenger,
        Channel.X: x,
        Channel.EMAIL: email,
        Channel.CHAT: webhook(settings.chat_webhook_url, "SWITCHBOARD_CHAT_WEBHOOK_URL"),
        Channel.FORM: webhook(settings.form_webhook_url, "SWITCHBOARD_FORM_WEBHOOK_URL"),
    }


def _smtp_send(host: str, port: int, msg: EmailMessage, timeout: float) -> None:
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise Unavailable(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        raise Refused(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise Unavailable(f"SMTP server {host}:{port}: {exc!r}") from exc
