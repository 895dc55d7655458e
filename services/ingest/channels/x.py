"""X (Twitter) direct messages through the Account Activity API: the CRC challenge answered
with the consumer secret, ``x-twitter-webhooks-signature`` checked on every delivery,
``direct_message_events`` of type ``message_create``; the account's own messages ignored."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.ingest.channels.base import Incoming, from_epoch
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
    model_config = ConfigDict(extra="ignore")

    for_user_id: str
    direct_message_events: list[dict[str, Any]] = []
    users: dict[str, dict[str, Any]] = {}


def read_delivery(delivery: Delivery) -> list[Incoming]:
    out: list[Incoming] = []
    for event in delivery.direct_message_events:
        if event.get("type") != "message_create":
            continue
        create = event.get("message_create") or {}
        sender = create.get("sender_id")
        if not isinstance(sender, str) or not isinstance(event.get("id"), str):
            raise ValueError("a message_create event needs id and sender_id")
        if sender == delivery.for_user_id:
            continue  # our own reply, echoed back
        data = create.get("message_data") or {}
        attachments = []
        media = (data.get("attachment") or {}).get("media")
        if isinstance(media, dict):
            attachments.append(
                Attachment(content_type=media.get("type"), ref=media.get("media_url_https"))
            )
        text = data.get("text") or " ".join(f"[{a.content_type}]" for a in attachments)
        if not text:
            continue
        user = delivery.users.get(sender, {})
        created = event.get("created_timestamp")
        out.append(
            Incoming(
                channel=Channel.X,
                channel_message_id=event["id"],
                conversation_ref=f"{delivery.for_user_id}:{sender}",
                customer=Customer(id=f"x:{sender}", name=user.get("name")),
                text=text,
                sent_at=from_epoch(int(created) / 1000) if created else None,
                attachments=attachments,
            )
        )
    return out
