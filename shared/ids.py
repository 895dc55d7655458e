"""Switchboard's derived ids and keys: the same thing named twice gets the same id, so a retried
webhook, a republished event or a redelivered record is recognised and applied once."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.events import Channel

# Fixed namespace for Switchboard's name-based (uuid5) ids; never change it.
ID_NAMESPACE = uuid.UUID("6f1c2f4e-8d0b-5b8e-9a57-3c1a8e2b7d10")


_NAMESPACE_BYTES = ID_NAMESPACE.bytes
# The version (5) and variant (RFC 4122) bits of a name-based id, as uuid.UUID sets them.
_CLEAR_BITS = ~((0xF000 << 64) | (0xC000 << 48))
_SET_BITS = (5 << 76) | (0x8000 << 48)


def derived_id(*parts: object) -> uuid.UUID:
    """A stable id for the thing named by ``parts`` (same parts, same id): ``uuid.uuid5`` of
    the parts joined, computed without its argument checks (the router derives several ids
    per message; tests/unit/test_ids.py holds it equal to uuid5)."""
    name = "\x1f".join(map(str, parts)).encode()
    digest = int.from_bytes(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    derived = object.__new__(uuid.UUID)
    object.__setattr__(derived, "int", digest & _CLEAR_BITS | _SET_BITS)
    object.__setattr__(derived, "is_safe", uuid.SafeUUID.unknown)
    return derived


def message_id_for(channel: Channel, channel_message_id: str) -> uuid.UUID:
    """The message id of a provider's message: a retried webhook yields the same id."""
    return derived_id("message", channel.value, channel_message_id)


def conversation_key_for(channel: Channel, conversation_ref: str) -> str:
    """The Kafka key of a conversation: one channel's thread keeps its order on one partition."""
    return f"{channel.value}:{conversation_ref}"
