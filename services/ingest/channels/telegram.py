"""Telegram Bot API webhook: ``Update`` objects, authenticated by the secret token Telegram
echoes in ``X-Telegram-Bot-Api-Secret-Token`` (set with ``setWebhook(secret_token=...)``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.ingest.channels.base import Incoming, from_epoch
from shared.events import Attachment, Channel, Customer

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class User(_Lenient):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class Chat(_Lenient):
    id: int
    type: str


class PhotoSize(_Lenient):
    file_id: str
    file_unique_id: str | None = None
    file_size: int | None = None


class Document(_Lenient):
    file_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class Message(_Lenient):
    message_id: int
    date: int
    chat: Chat
    from_: User | None = Field(default=None, alias="from")
    edit_date: int | None = None
    text: str | None = None
    caption: str | None = None
    photo: list[PhotoSize] | None = None
    document: Document | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Update(_Lenient):
    update_id: int
    message: Message | None = None
    edited_message: Message | None = None


def read_update(update: Update) -> list[Incoming]:
    """The customer message in an update (new or edited); other updates carry none."""
    message, edited = update.message, False
    if message is None and update.edited_message is not None:
        message, edited = update.edited_message, True
    if message is None or message.from_ is None or message.from_.is_bot:
        return []
    attachments = []
    if message.photo:
        largest = max(message.photo, key=lambda p: p.file_size or 0)
        attachments.append(
            Attachment(
                name=None, content_type="image/jpeg", size=largest.file_size, ref=largest.file_id
            )
        )
    if message.document:
        d = message.document
        attachments.append(
            Attachment(name=d.file_name, content_type=d.mime_type, size=d.file_size, ref=d.file_id)
        )
    text = message.text or message.caption or _placeholder(attachments)
    if not text:
        return []  # stickers, locations, polls...: nothing an agent can read
    sender = message.from_
    name = " ".join(p for p in (sender.first_name, sender.last_name) if p) or sender.username
    message_ref = f"{message.chat.id}:{message.message_id}"
    if edited:
        message_ref += f":edit:{message.edit_date or update.update_id}"
    return [
        Incoming(
            channel=Channel.TELEGRAM,
            channel_message_id=message_ref,
            conversation_ref=str(message.chat.id),
            customer=Customer(id=f"tg:{sender.id}", name=name, language=sender.language_code),
            text=text,
            sent_at=from_epoch(message.edit_date if edited else message.date),
            attachments=attachments,
        )
    ]


def _placeholder(attachments: list[Attachment]) -> str:
    return " ".join(f"[{a.name or a.content_type or 'file'}]" for a in attachments)
