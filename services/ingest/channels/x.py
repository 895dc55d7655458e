"""X (Twitter) direct messages through the Account Activity API: the CRC challenge answered
with the consumer secret, ``x-twitter-webhooks-signature`` checked on every delivery,
``direct_message_events`` of type ``message_create``, each read on its own; the account's own
messages ignored. A DM's photo, video or GIF reaches the agent as its URL."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.ingest.channels.base import Incoming, from_epoch
from services.ingest.channels.outcomes import (
    Ignored,
    Outcome,
    UnreadableItem,
    duration,
    obj,
    placeholder,
    read_item,
    string,
    text_of,
)
from shared.events import Attachment, Channel, Customer

SIGNATURE_HEADER = "x-twitter-webhooks-signature"

# The CRC answer is base64(HMAC(consumer secret, crc_token)), which is also the signature of a
# delivery whose body is crc_token. So only tokens shaped like X's are answered: base64 or
# base64url characters (X sends the unpadded base64 of a UUID, 48 of them), padding only at the
# end. A delivery is a JSON object, which needs "{", so no such token can be one.
CRC_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{8,128}={0,2}")
CRC_TOKEN_SHAPE = "8 to 128 base64 or base64url characters"


def is_crc_token(token: str) -> bool:
    """Whether ``token`` is shaped like the crc_token X sends (and so cannot be a delivery)."""
    return CRC_TOKEN.fullmatch(token) is not None


class Delivery(BaseModel):
    model_config = ConfigDict(extra="allow")

    for_user_id: str
    direct_message_events: list[Any] = []
    users: dict[str, dict[str, Any]] = {}


# Other activities a delivery may carry, one item each: none is a direct message to answer.
_OTHER_EVENTS = {
    "direct_message_indicate_typing_events": "typing",
    "direct_message_mark_read_events": "read",
}


def read_delivery(delivery: Delivery) -> list[Outcome]:
    """Every direct message of an Account Activity delivery, each read alone; the account's
    own messages, typing and read indicators and other activities are ignored."""
    out: list[Outcome] = [
        read_item(Channel.X, event, _message, delivery) for event in delivery.direct_message_events
    ]
    for key, events in (delivery.model_extra or {}).items():
        if key.endswith("_events") and isinstance(events, list):
            out.extend(Ignored(Channel.X, _OTHER_EVENTS.get(key, "not_a_message")) for _ in events)
    return out


def _message(event: dict[str, Any], delivery: Delivery) -> Incoming | Ignored:
    if not isinstance(event, dict):
        raise UnreadableItem("invalid_item", "a direct message event is an object")
    if event.get("type") != "message_create":
        return Ignored(Channel.X, "not_a_message")
    create = obj(event.get("message_create"))
    sender = create.get("sender_id")
    if not isinstance(event.get("id"), str) or not event["id"]:
        raise UnreadableItem("missing_id", "a message_create event needs an id")
    if not isinstance(sender, str) or not sender:
        raise UnreadableItem("missing_sender", "a message_create event needs sender_id")
    if sender == delivery.for_user_id:
        return Ignored(Channel.X, "own_message")  # our own reply, echoed back
    data = obj(create.get("message_data"))
    text = string(data.get("text")) or ""
    attachments = []
    attachment = obj(data.get("attachment"))
    media = attachment.get("media")
    if isinstance(media, dict):
        found, shown = _media(media)
        attachments.append(found)
        # X appends the media's t.co link to the text; the agent gets the media instead.
        link = media.get("url")
        if isinstance(link, str) and link:
            text = text.replace(link, "").strip()
        text = text or shown
    user = delivery.users.get(sender, {})
    created = event.get("created_timestamp")
    return Incoming(
        channel=Channel.X,
        channel_message_id=event["id"],
        conversation_ref=f"{delivery.for_user_id}:{sender}",
        customer=Customer(id=f"x:{sender}", name=text_of(user.get("name"))),
        text=text_of(text) or placeholder("empty message"),
        sent_at=from_epoch(int(created) / 1000) if created else None,
        attachments=attachments,
    )


def _media(media: dict[str, Any]) -> tuple[Attachment, str]:
    """A DM's photo, video or GIF: its URL (the best video variant), and its placeholder."""
    kind = string(media.get("type")) or "media"
    url, content_type = media.get("media_url_https"), None
    video = obj(media.get("video_info"))
    variants = [
        v
        for v in video.get("variants") or []
        if isinstance(v, dict) and isinstance(v.get("url"), str)
    ]
    if variants:
        best = max(variants, key=lambda v: v.get("bitrate") or 0)
        url, content_type = best["url"], best.get("content_type")
    shown = {"photo": "photo", "animated_gif": "GIF"}.get(kind, kind)
    millis = video.get("duration_millis")
    length = duration(millis / 1000) if isinstance(millis, int | float) else ""
    return (
        Attachment(
            kind=kind,
            content_type=content_type if isinstance(content_type, str) else None,
            ref=url if isinstance(url, str) else None,
        ),
        placeholder(shown, length),
    )
