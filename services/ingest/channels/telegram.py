"""Telegram Bot API webhook: ``Update`` objects, authenticated by the secret token Telegram
echoes in ``X-Telegram-Bot-Api-Secret-Token`` (set with ``setWebhook(secret_token=...)``).

Only what is used is validated: an update's envelope, and of its message the ids, the sender
and the chat's id. Every kind of message reaches an agent as its text, its caption or a
placeholder naming its kind, with the ``file_id`` kept. Group and supergroup chats are their
own conversations (keyed on the chat, replies go to the group); messages of a connected
business account (``business_message``) are keyed on the business connection too, since a
reply must go out through it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.ingest.channels.base import Incoming, from_epoch
from services.ingest.channels.outcomes import (
    Ignored,
    Outcome,
    coordinate,
    duration,
    placeholder,
    read_item,
    text_of,
)
from shared.events import Attachment, Channel, Customer

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
CHANNEL = Channel.TELEGRAM

# Updates that carry a customer's message, and whether it is an edit.
_MESSAGE_UPDATES = {
    "message": False,
    "edited_message": True,
    "business_message": False,
    "edited_business_message": True,
}
_CHANNEL_POSTS = ("channel_post", "edited_channel_post")
# Service messages: chat events, not something a customer wrote.
_SERVICE = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "successful_payment",
        "refunded_payment",
        "users_shared",
        "chat_shared",
        "connected_website",
        "write_access_allowed",
        "proximity_alert_triggered",
        "boost_added",
        "chat_background_set",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "giveaway_created",
        "giveaway_completed",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
    }
)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Update(_Lenient):
    """The envelope: what is not an object here refuses the delivery (422)."""

    update_id: int | None = None
    message: dict[str, Any] | None = None
    edited_message: dict[str, Any] | None = None
    business_message: dict[str, Any] | None = None
    edited_business_message: dict[str, Any] | None = None
    channel_post: dict[str, Any] | None = None
    edited_channel_post: dict[str, Any] | None = None


class User(_Lenient):
    id: int
    is_bot: bool = False
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class Chat(_Lenient):
    id: int
    type: str | None = None  # documented as always sent, but never needed: not required
    title: str | None = None
    username: str | None = None


class Message(_Lenient):
    """What is read of a message; its content is read leniently in ``_content``."""

    message_id: int
    chat: Chat
    from_: User | None = Field(default=None, alias="from")
    date: int | None = None
    edit_date: int | None = None
    business_connection_id: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def read_update(update: Update) -> list[Outcome]:
    """What an update holds: one customer message (new or edited), or why it holds none."""
    for key, edited in _MESSAGE_UPDATES.items():
        raw = getattr(update, key)
        if raw is not None:
            return [read_item(CHANNEL, raw, _message, edited, update.update_id)]
    if any(getattr(update, key) is not None for key in _CHANNEL_POSTS):
        return [Ignored(CHANNEL, "channel_post")]
    return [Ignored(CHANNEL, "not_a_message")]  # callback queries, member updates, polls...


def _message(raw: dict[str, Any], edited: bool, update_id: int | None) -> Incoming | Ignored:
    message = Message.model_validate(raw)
    chat, sender = message.chat, message.from_
    if chat.type == "channel":
        return Ignored(CHANNEL, "channel_post")
    if sender is None:
        return Ignored(CHANNEL, "no_sender")  # posted as a chat (an anonymous admin)
    if sender.is_bot:
        return Ignored(CHANNEL, "bot_sender")
    connection = message.business_connection_id
    if connection and sender.id != chat.id:
        # In a business chat, the chat is the customer; anyone else writing is the business.
        return Ignored(CHANNEL, "own_message")
    text, attachments = _content(raw)
    if text is None:
        if _SERVICE & raw.keys():
            return Ignored(CHANNEL, "service_message")
        text = placeholder("a Telegram message of a kind not shown here")
    group = None
    if chat.type in ("group", "supergroup") or (chat.type is None and chat.id < 0):
        group = chat.title or str(chat.id)
    thread = str(chat.id) + (f":business:{connection}" if connection else "")
    message_ref = f"{thread}:{message.message_id}"
    name = " ".join(p for p in (sender.first_name, sender.last_name) if p) or sender.username
    return Incoming(
        channel=CHANNEL,
        channel_message_id=(
            f"{message_ref}:edit:{message.edit_date or update_id or 0}" if edited else message_ref
        ),
        conversation_ref=thread,
        customer=Customer(id=f"tg:{sender.id}", name=name, language=sender.language_code),
        text=text,
        sent_at=from_epoch(message.edit_date if edited else message.date),
        attachments=attachments,
        edits=message_ref if edited else None,
        group=group,
    )


def _content(raw: dict[str, Any]) -> tuple[str | None, list[Attachment]]:
    """The message's text (its text, its caption, or a placeholder naming its kind) and what it
    carries; None for the text when it is no kind of message we know."""
    attachments: list[Attachment] = []
    shown = None
    for kind, read in _KINDS.items():
        value = raw.get(kind)
        if value:
            shown, attachment = read(value)
            if attachment is not None:
                attachments.append(attachment)
            break
    text = text_of(raw.get("text")) or text_of(raw.get("caption")) or shown
    return text, attachments


def _file(kind: str, value: dict[str, Any], content_type: str | None = None) -> Attachment:
    size = value.get("file_size")
    return Attachment(
        kind=kind,
        name=value.get("file_name") if isinstance(value.get("file_name"), str) else None,
        content_type=value.get("mime_type") or content_type,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        ref=str(value["file_id"]),
    )


def _photo(sizes: list[dict[str, Any]]) -> tuple[str, Attachment]:
    largest = max(sizes, key=lambda p: p.get("file_size") or 0)
    return placeholder("photo"), _file("photo", largest, "image/jpeg")


def _document(d: dict[str, Any]) -> tuple[str, Attachment]:
    return placeholder(d.get("file_name") or d.get("mime_type") or "file"), _file("document", d)


def _voice(v: dict[str, Any]) -> tuple[str, Attachment]:
    return placeholder("voice message", duration(v.get("duration"))), _file("voice", v)


def _audio(a: dict[str, Any]) -> tuple[str, Attachment]:
    title = " – ".join(str(p) for p in (a.get("performer"), a.get("title")) if p)
    shown = placeholder("audio", title or a.get("file_name"), duration(a.get("duration")))
    return shown, _file("audio", a)


def _video(v: dict[str, Any]) -> tuple[str, Attachment]:
    return placeholder("video", duration(v.get("duration"))), _file("video", v)


def _video_note(v: dict[str, Any]) -> tuple[str, Attachment]:
    shown = placeholder("video message", duration(v.get("duration")))
    return shown, _file("video_note", v, "video/mp4")


def _animation(a: dict[str, Any]) -> tuple[str, Attachment]:
    return placeholder("GIF", duration(a.get("duration"))), _file("animation", a)


def _sticker(s: dict[str, Any]) -> tuple[str, Attachment]:
    return placeholder("sticker", s.get("emoji")), _file("sticker", s)


def _location(loc: dict[str, Any], title: str | None = None) -> tuple[str, Attachment]:
    lat, lon = coordinate(loc.get("latitude")), coordinate(loc.get("longitude"))
    if lat is None or lon is None:
        raise ValueError("a location needs a latitude and a longitude")
    shown = placeholder("location", title, f"{lat}, {lon}")
    return shown, Attachment(kind="location", ref=f"geo:{lat},{lon}")


def _venue(v: dict[str, Any]) -> tuple[str, Attachment]:
    title = ", ".join(str(p) for p in (v.get("title"), v.get("address")) if p)
    return _location(v["location"], title or None)


def _contact(c: dict[str, Any]) -> tuple[str, Attachment]:
    name = " ".join(str(p) for p in (c.get("first_name"), c.get("last_name")) if p)
    phone = c.get("phone_number")
    return (
        placeholder("contact", name, phone),
        Attachment(kind="contact", name=name or None, ref=f"tel:{phone}" if phone else None),
    )


def _poll(p: dict[str, Any]) -> tuple[str, Attachment]:
    options = [str(o.get("text")) for o in p.get("options") or [] if isinstance(o, dict)]
    shown = placeholder("poll", p.get("question"), *(["–", " / ".join(options)] if options else []))
    return shown, Attachment(kind="poll", ref=str(p["id"]) if p.get("id") else None)


def _dice(d: dict[str, Any]) -> tuple[str, None]:
    return placeholder("dice", d.get("emoji"), d.get("value")), None


_KINDS: dict[str, Any] = {
    "photo": _photo,
    "voice": _voice,
    "audio": _audio,
    "video": _video,
    "video_note": _video_note,
    "animation": _animation,  # before document: an animation has a document too
    "document": _document,
    "sticker": _sticker,
    "venue": _venue,  # before location: a venue has a location too
    "location": _location,
    "contact": _contact,
    "poll": _poll,
    "dice": _dice,
}
