"""What an adapter makes of each item of a delivery: a customer message (``Incoming``), an item
ignored for a reason (a receipt, an echo, a bot), or an item it cannot read (dead-lettered
with the item and why). An item never costs the other items of its delivery."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.ingest.channels.base import Incoming
from shared.events import Channel


@dataclass(frozen=True)
class Ignored:
    """Not a customer message (a status, a read receipt, an echo of our reply, a bot).
    ``reason`` is a short fixed code: it labels a metric."""

    channel: Channel
    reason: str


@dataclass(frozen=True)
class Unreadable:
    """A customer's item the adapter cannot read: dead-lettered with ``detail`` and the item.
    ``reason`` is a short fixed code: it labels a metric."""

    channel: Channel
    reason: str
    detail: str
    item: Any = None

    def item_json(self) -> str:
        """The provider's item as JSON text (ASCII: any text that cannot be stored escaped)."""
        return json.dumps(self.item, default=str, ensure_ascii=True)


Outcome = Incoming | Ignored | Unreadable


class UnreadableItem(ValueError):
    """Raised inside an adapter's item reader: the item is unreadable for ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def read_item(
    channel: Channel, item: Any, reader: Callable[..., Incoming | Ignored | None], *args: Any
) -> Outcome:
    """``reader(item, *args)``, with anything it cannot read turned into an Unreadable for that item
    alone. A reader answers None only for what is not an item at all (never for a message)."""
    try:
        outcome = reader(item, *args)
    except UnreadableItem as exc:
        return Unreadable(channel, exc.reason, str(exc), item)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()
        )
        return Unreadable(channel, "invalid_item", problems, item)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        return Unreadable(channel, "invalid_item", f"{type(exc).__name__}: {exc}", item)
    if outcome is None:
        return Ignored(channel, "not_a_message")
    return outcome


# ---------------------------------------------------------------- placeholders


def duration(seconds: object) -> str:
    """``0:12``, ``1:02:03``: how long a voice note or video lasts, as players show it."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return ""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def coordinate(value: object) -> str | None:
    """A latitude or longitude as people write it (1.29, not 1.290000)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number != number or abs(number) > 180:  # NaN or not a coordinate
        return None
    return f"{number:.6f}".rstrip("0").rstrip(".")


def placeholder(*words: object) -> str:
    """``[voice message 0:12]``: what an agent reads for a message without text."""
    return "[" + " ".join(str(w) for w in words if w not in (None, "")) + "]"


def text_of(value: object) -> str | None:
    """A provider's text field when it is text with something in it."""
    return value if isinstance(value, str) and value.strip() else None


def obj(value: object) -> dict[str, Any]:
    """A provider's object field, or an empty one when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


def string(value: object) -> str | None:
    """A provider's string field, or None when it is missing or not a string."""
    return value if isinstance(value, str) else None
