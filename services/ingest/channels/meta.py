"""WhatsApp Cloud API and Messenger webhooks (Meta): the GET verification handshake, POST bodies
signed with ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret), batched
``entry[]`` / ``changes[]`` / ``messaging[]``; statuses, reads, deliveries and echoes ignored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from services.ingest.channels.base import Incoming, from_epoch
from shared.events import Attachment, Channel, Customer

SIGNATURE_HEADER = "X-Hub-Signature-256"
_MEDIA = ("image", "document", "audio", "video", "sticker")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Change(_Lenient):
    field: str
    value: dict[str, Any]


class Entry(_Lenient):
    id: str
    changes: list[Change] = []
    messaging: list[dict[str, Any]] = []


class Notification(_Lenient):
    object: str
    entry: list[Entry]


def read_whatsapp(notification: Notification) -> list[Incoming]:
    """Customer messages of a WhatsApp Business Account notification (several per delivery)."""
    out: list[Incoming] = []
    for entry in notification.entry:
        for change in entry.changes:
            if change.field != "messages":
                continue
            value = change.value
            phone_number_id = str(value.get("metadata", {}).get("phone_number_id", entry.id))
            names = {
                c.get("wa_id"): c.get("profile", {}).get("name")
                for c in value.get("contacts", [])
                if isinstance(c, dict)
            }
            for m in value.get("messages", []):
                incoming = _whatsapp_message(m, phone_number_id, names)
                if incoming is not None:
                    out.append(incoming)
    return out


def _whatsapp_message(
    m: dict[str, Any], phone_number_id: str, names: dict[Any, Any]
) -> Incoming | None:
    sender, mid, kind = m.get("from"), m.get("id"), m.get("type")
    if not isinstance(sender, str) or not isinstance(mid, str):
        raise ValueError("a WhatsApp message needs 'from' and 'id'")
    attachments: list[Attachment] = []
    text = None
    if kind == "text":
        text = (m.get("text") or {}).get("body")
    elif kind in _MEDIA:
        media = m.get(kind) or {}
        attachments.append(
            Attachment(
                name=media.get("filename"), content_type=media.get("mime_type"), ref=media.get("id")
            )
        )
        text = media.get("caption") or f"[{kind}]"
    elif kind == "button":
        text = (m.get("button") or {}).get("text")
    elif kind == "interactive":
        reply = m.get("interactive") or {}
        chosen = reply.get("button_reply") or reply.get("list_reply") or {}
        text = chosen.get("title")
    if not text:
        return None  # reactions, locations, system messages
    return Incoming(
        channel=Channel.WHATSAPP,
        channel_message_id=mid,
        conversation_ref=f"{phone_number_id}:{sender}",
        customer=Customer(id=f"wa:{sender}", name=names.get(sender)),
        text=text,
        sent_at=from_epoch(m.get("timestamp")),
        attachments=attachments,
    )


def read_messenger(notification: Notification) -> list[Incoming]:
    """Customer messages (and their edits) of a Page notification; echoes of the page's own
    messages, deliveries, reads and postbacks are ignored."""
    out: list[Incoming] = []
    for entry in notification.entry:
        for event in entry.messaging:
            sender = (event.get("sender") or {}).get("id")
            if not isinstance(sender, str):
                raise ValueError("a Messenger event needs sender.id")
            sent_at = from_epoch((event.get("timestamp") or 0) / 1000)
            ref = f"{entry.id}:{sender}"
            customer = Customer(id=f"fb:{sender}")
            if "message" in event:
                message = event["message"] or {}
                if message.get("is_echo"):
                    continue
                attachments = [
                    Attachment(content_type=a.get("type"), ref=(a.get("payload") or {}).get("url"))
                    for a in message.get("attachments", [])
                    if isinstance(a, dict)
                ]
                text = message.get("text") or " ".join(f"[{a.content_type}]" for a in attachments)
                if not message.get("mid") or not text:
                    continue
                out.append(
                    Incoming(
                        Channel.MESSENGER, message["mid"], ref, customer, text, sent_at, attachments
                    )
                )
            elif "message_edit" in event:
                edit = event["message_edit"] or {}
                if edit.get("mid") and edit.get("text"):
                    out.append(
                        Incoming(
                            Channel.MESSENGER,
                            f"{edit['mid']}:edit:{edit.get('num_edit', 1)}",
                            ref,
                            customer,
                            edit["text"],
                            sent_at,
                        )
                    )
    return out
