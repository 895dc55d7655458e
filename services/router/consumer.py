"""The router's Kafka side: apply inbound messages a batch per transaction (or one at a time,
the reference the batch is held to); record reply delivery statuses. The sweeps are in
``sweeps.py``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord

from services.router.handlers import receive_message
from services.router.intake import receive_messages
from services.router.uow import UnitOfWork
from shared.consume import RecordHandler, parse_record
from shared.events import (
    InboundMessage,
    ReplyDelivered,
    ReplyFailed,
    delivery_event_adapter,
)
from shared.tracing import carrier_json_of

log = logging.getLogger(__name__)


# An inbound message and the trace it came in (its record's headers, as JSON).
TracedInbound = tuple[InboundMessage, str | None]


def parse_inbound(record: ConsumerRecord[Any, Any]) -> TracedInbound:
    """An inbound record's message and trace, or PoisonRecord saying what is wrong with it."""
    return parse_record(InboundMessage, record), carrier_json_of(record.headers)


def inbound_batch_applier(uow: UnitOfWork) -> Callable[[list[TracedInbound]], Awaitable[None]]:
    """Apply a batch of inbound messages in one transaction; returns after the commit."""

    async def apply(items: list[TracedInbound]) -> None:
        traces = {message.message_id: trace for message, trace in items if trace}
        async with uow() as ctx:
            await receive_messages(ctx, [message for message, _ in items], traces)

    return apply


def inbound_handler(uow: UnitOfWork) -> RecordHandler:
    """Parse (or reject as poison) and apply one inbound record; returns after the commit."""

    async def handle(record: ConsumerRecord[Any, Any]) -> None:
        message = parse_record(InboundMessage, record)
        async with uow() as ctx:
            await receive_message(ctx, message)

    return handle


DeliveryStatus = ReplyDelivered | ReplyFailed


def parse_delivery(record: ConsumerRecord[Any, Any]) -> DeliveryStatus:
    """A delivery status the dispatcher reports on the delivery-events topic, or PoisonRecord
    saying what is wrong with it."""
    return parse_record(delivery_event_adapter, record)


def delivery_applier(uow: UnitOfWork) -> Callable[[list[DeliveryStatus]], Awaitable[None]]:
    """Record a batch's delivery statuses in one transaction, in order (a later 'sent' wins)."""

    async def apply(statuses: list[DeliveryStatus]) -> None:
        async with uow() as ctx:
            for event in statuses:
                if isinstance(event, ReplyDelivered):
                    detail = f"delivered after {event.attempts} attempt(s)"
                    await ctx.store.set_delivery(event.message_id, "sent", detail)
                else:
                    await ctx.store.set_delivery(event.message_id, "failed", event.reason)

    return apply
