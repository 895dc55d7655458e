"""The router's outbox: its schema (``router.outbox``, ``router.relay_lease``), the channel a
commit with events notifies, and its relay as the router's settings configure it (the relay
itself, shared with metrics, is ``shared/outbox.py``'s)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.router.settings import RouterSettings
from shared.kafka import TopicGuard
from shared.outbox import OutboxRelay

OUTBOX_SCHEMA = "router"
OUTBOX_CHANNEL = "switchboard_outbox"  # NOTIFY channel: events were written to the outbox


def router_relay(
    settings: RouterSettings,
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    *,
    idle_poll_s: float = 0.5,
) -> OutboxRelay:
    """The relay of the router's outbox, with the settings' lease and linger."""
    return OutboxRelay(
        engine,
        producer,
        TopicGuard(settings),
        schema=OUTBOX_SCHEMA,
        idle_poll_s=idle_poll_s,
        lease_s=settings.outbox_lease_s,
        linger_s=settings.outbox_linger_ms / 1000,
    )
