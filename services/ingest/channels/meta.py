"""WhatsApp Cloud API and Messenger webhooks (Meta): the GET verification handshake, POST bodies
signed with ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret), batched
``entry[]`` / ``changes[]`` / ``messaging[]``. Each message is read on its own: one that cannot
be read is dead-lettered and the others go on; statuses, reads, deliveries and echoes are
ignored, and counted."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from services.ingest.channels.base import Incoming, from_epoch
from services.ingest.channels.outcomes import (
    Ignored,
    Outcome,
    UnreadableItem,
    coordinate,
    obj,
    placeholder,
    read_item,
    string,
    text_of,
)
from shared.events import Attachment, Channel, Customer

SIGNATURE_HEADER = "X-Hub-Signature-256"
_MEDIA = ("image", "document", "audio", "video", "sticker")
# WhatsApp message types that are not something a customer wrote to be answered.
_WHATSAPP_IGNORED = {
    "reaction": "reaction",
    "system": "system",
    "request_welcome": "request_welcome",
    "revoke": "revoke",
}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Change(_Lenient):
    field: str
    value: dict[str, Any]


class Entry(_Lenient):
    id: str
    changes: list[Change] = []
    messaging: list[Any] = []


class Notification(_Lenient):
    object: str
    entry: list[Entry]


# ---------------------------------------------------------------- WhatsApp


def read_whatsapp(notification: Notification) -> list[Outcome]:
    """Every message and status of a WhatsApp Business Account notification, each read alone."""
    out: list[Outcome] = []
    for entry in notification.entry:
        for change in entry.changes:
            if change.field != "messages":
                out.append(Ignored(Channel.WHATSAPP, "not_a_message"))
                continue
            value = change.value
            metadata = value.get("metadata")
            phone_number_id = str(obj(metadata).get("phone_number_id") or entry.id)
            names = _contact_names(value.get("contacts"))
            out.extend(Ignored(Channel.WHATSAPP, "status") for _ in _list(value.get("statuses")))
            for m in _list(value.get("messages")):
                out.append(
                    read_item(Channel.WHATSAPP, m, _whatsapp_message, phone_number_id, names)
                )
    return out


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _contact_names(contacts: object) -> dict[str, str]:
    """A sender's name by each of its ids: phone (``wa_id``) and business-scoped (``user_id``)."""
    names: dict[str, str] = {}
    for c in _list(contacts):
        if not isinstance(c, dict):
            continue
        profile = obj(c.get("profile"))
        name = text_of(profile.get("name")) or text_of(profile.get("username"))
        for key in ("wa_id", "user_id"):
            if name and isinstance(c.get(key), str):
                names[c[key]] = name
    return names


def _whatsapp_message(
    m: dict[str, Any], phone_number_id: str, names: dict[str, str]
) -> Incoming | Ignored:
    # A user known only by a username has a business-scoped id (from_user_id), no phone.
    sender = text_of(m.get("from")) or text_of(m.get("from_user_id"))
    mid, kind = m.get("id"), m.get("type")
    if not isinstance(mid, str) or not mid:
        raise UnreadableItem("missing_id", "a WhatsApp message needs an 'id'")
    if sender is None:
        raise UnreadableItem("missing_sender", "a WhatsApp message needs 'from' or 'from_user_id'")
    if kind in _WHATSAPP_IGNORED:
        return Ignored(Channel.WHATSAPP, _WHATSAPP_IGNORED[kind])
    edits = None
    content = m
    if kind == "edit":
        edit = m.get("edit")
        if not isinstance(edit, dict) or not text_of(edit.get("original_message_id")):
            raise UnreadableItem("invalid_item", "an edit needs edit.original_message_id")
        edits = edit["original_message_id"]
        content = obj(edit.get("message"))
    text, attachments = _whatsapp_content(content)
    group_id = text_of(m.get("group_id"))
    # A group is its own conversation, so a reply goes to the group, never privately.
    ref = f"{phone_number_id}:group:{group_id}" if group_id else f"{phone_number_id}:{sender}"
    return Incoming(
        channel=Channel.WHATSAPP,
        channel_message_id=mid,
        conversation_ref=ref,
        customer=Customer(id=f"wa:{sender}", name=names.get(sender)),
        text=text,
        sent_at=from_epoch(m.get("timestamp")),
        attachments=attachments,
        edits=edits,
        group=group_id,
    )


def _whatsapp_content(m: dict[str, Any]) -> tuple[str, list[Attachment]]:
    """What an agent reads of a message's content, and the media it references."""
    kind = m.get("type")
    body = obj(m.get(kind)) if isinstance(kind, str) else {}
    if kind == "text":
        return text_of(body.get("body")) or placeholder("empty message"), []
    if kind in _MEDIA:
        voice = kind == "audio" and body.get("voice") is True
        attachment = Attachment(
            kind="voice" if voice else kind,
            name=string(body.get("filename")),
            content_type=string(body.get("mime_type")),
            ref=str(body.get("id") or body.get("url") or "") or None,
        )
        shown = {"image": "photo", "audio": "voice message" if voice else "audio"}.get(kind, kind)
        label = body.get("emoji") if kind == "sticker" else body.get("filename")
        return text_of(body.get("caption")) or placeholder(shown, label), [attachment]
    if kind == "location":
        lat, lon = coordinate(body.get("latitude")), coordinate(body.get("longitude"))
        if lat is None or lon is None:
            raise UnreadableItem("invalid_item", "a location needs a latitude and a longitude")
        title = ", ".join(str(p) for p in (body.get("name"), body.get("address")) if p)
        return placeholder("location", title, f"{lat}, {lon}"), [
            Attachment(kind="location", ref=f"geo:{lat},{lon}")
        ]
    if kind == "contacts":
        return _whatsapp_contacts(m.get("contacts"))
    if kind == "button":
        return text_of(body.get("text")) or placeholder("button"), []
    if kind == "interactive":
        chosen = obj(body.get("button_reply") or body.get("list_reply"))
        if text_of(chosen.get("title")):
            return chosen["title"], []
        return placeholder("form reply" if "nfm_reply" in body else "interactive reply"), []
    if kind == "order":
        items = _list(body.get("product_items"))
        return placeholder("order", f"{len(items)} items" if items else None), []
    # "unsupported" (what WhatsApp cannot show a business) and types newer than this adapter.
    return placeholder("a WhatsApp message of a kind not shown here", kind), []


def _whatsapp_contacts(contacts: object) -> tuple[str, list[Attachment]]:
    shown, attachments = [], []
    for c in _list(contacts):
        if not isinstance(c, dict):
            continue
        name = string(obj(c.get("name")).get("formatted_name"))
        phones = [p.get("phone") for p in _list(c.get("phones")) if isinstance(p, dict)]
        phone = next((p for p in phones if isinstance(p, str)), None)
        shown.append(" ".join(str(p) for p in (name, phone) if p))
        attachments.append(
            Attachment(kind="contact", name=name, ref=f"tel:{phone}" if phone else None)
        )
    return placeholder("contact", "; ".join(s for s in shown if s)), attachments


# ---------------------------------------------------------------- Messenger


def read_messenger(notification: Notification) -> list[Outcome]:
    """Customer messages, their edits and button taps of a Page notification, each event read
    alone; echoes of the page's own messages, deliveries and reads are ignored."""
    out: list[Outcome] = []
    for entry in notification.entry:
        for event in entry.messaging:
            out.append(read_item(Channel.MESSENGER, event, _messenger_event, entry.id))
    return out


def _messenger_event(event: dict[str, Any], page_id: str) -> Incoming | Ignored:
    if not isinstance(event, dict):
        raise UnreadableItem("invalid_item", "a Messenger event is an object")
    sender = event.get("sender")
    sender_id = sender.get("id") if isinstance(sender, dict) else None
    if not isinstance(sender_id, str) or not sender_id:
        raise UnreadableItem("missing_sender", "a Messenger event needs sender.id")
    timestamp = event.get("timestamp")
    sent_at = from_epoch(timestamp / 1000) if isinstance(timestamp, int | float) else None

    def incoming(mid: str, text: str, **more: Any) -> Incoming:
        return Incoming(
            channel=Channel.MESSENGER,
            channel_message_id=mid,
            conversation_ref=f"{page_id}:{sender_id}",
            customer=Customer(id=f"fb:{sender_id}"),
            text=text,
            sent_at=sent_at,
            **more,
        )

    if "message" in event:
        message = obj(event["message"])
        if message.get("is_echo"):
            return Ignored(Channel.MESSENGER, "echo")
        mid = text_of(message.get("mid"))
        if mid is None:
            raise UnreadableItem("missing_id", "a Messenger message needs message.mid")
        attachments = [
            _messenger_attachment(a)
            for a in _list(message.get("attachments"))
            if isinstance(a, dict)
        ]
        text = text_of(message.get("text")) or " ".join(
            _messenger_placeholder(a) for a in attachments
        )
        if message.get("sticker_id") and not text_of(message.get("text")):
            text = placeholder("sticker")
        return incoming(mid, text or placeholder("empty message"), attachments=attachments)
    if "message_edit" in event:
        edit = obj(event["message_edit"])
        mid = text_of(edit.get("mid"))
        if mid is None:
            raise UnreadableItem("missing_id", "a Messenger edit needs message_edit.mid")
        text = text_of(edit.get("text")) or placeholder("edited message")
        return incoming(f"{mid}:edit:{edit.get('num_edit', 1)}", text, edits=mid)
    if "postback" in event:
        postback = obj(event["postback"])
        mid, title = text_of(postback.get("mid")), text_of(postback.get("title"))
        if mid and title:
            return incoming(mid, title)  # the button the customer tapped, as they read it
        return Ignored(Channel.MESSENGER, "postback")
    for key in ("read", "delivery", "reaction"):
        if key in event:
            return Ignored(Channel.MESSENGER, key)
    return Ignored(Channel.MESSENGER, "not_a_message")  # optins, referrals, handovers...


def _messenger_attachment(a: dict[str, Any]) -> Attachment:
    kind = string(a.get("type"))
    payload = obj(a.get("payload"))
    coordinates = obj(payload.get("coordinates"))
    if kind == "location" and coordinates:
        lat, lon = coordinate(coordinates.get("lat")), coordinate(coordinates.get("long"))
        if lat is not None and lon is not None:
            return Attachment(kind="location", content_type=kind, ref=f"geo:{lat},{lon}")
    if payload.get("sticker_id"):
        kind = "sticker"
    url = payload.get("url")
    return Attachment(kind=kind, content_type=kind, ref=url if isinstance(url, str) else None)


def _messenger_placeholder(a: Attachment) -> str:
    if a.kind == "location" and a.ref:
        return placeholder("location", a.ref.removeprefix("geo:").replace(",", ", "))
    return placeholder(a.kind or "attachment")
