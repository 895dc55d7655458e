"""The router's Kafka side: apply inbound messages a batch per transaction (or one at a time,
the reference the batch is held to); record reply delivery statuses; sweep the queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aiokafka import ConsumerRecord
from pydantic import Field, TypeAdapter

from services.router.assign import escalate_due, expire_offers, overflow_due, sweep_queue
from services.router.context import Context
from services.router.handlers import receive_message
from services.router.intake import receive_messages
from services.router.presence import Presence, away_unheard
from services.router.uow import UnitOfWork
from shared.consume import RecordHandler, parse_record
from shared.events import (
    InboundMessage,
    ReplyDelivered,
    ReplyFailed,
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
_delivery_status: TypeAdapter[DeliveryStatus] = TypeAdapter(
    Annotated[DeliveryStatus, Field(discriminator="type")]
)


def parse_delivery(record: ConsumerRecord[Any, Any]) -> DeliveryStatus:
    """A delivery status the dispatcher reports on the delivery-events topic."""
    return parse_record(_delivery_status, record)


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


async def sweep_forever(
    uow: UnitOfWork,
    interval_s: float,
    *,
    presence_timeout_s: float = 0,
    presence: Presence | None = None,
) -> None:
    """Periodically: set away agents whose frontend went quiet (with a presence timeout),
    move expired offers on, escalate conversations near their target, widen those whose
    overflow stage is due, and assign queued
    conversations that some agent can now take. Each in its own transaction.

    Presence: this process's ``presence`` is written first (what it heard counts at once),
    and nobody is set away before one flush interval has passed since the sweep started, so
    that after a restart of the desk every API process has written what it heard first."""

    async def in_transaction(sweep: Callable[[Context], Awaitable[int]]) -> int:
        async with uow() as ctx:
            return await sweep(ctx)

    started = asyncio.get_running_loop().time()
    grace_s = presence.flush_s if presence is not None else 0.0

    async def presence_sweep() -> int:
        if asyncio.get_running_loop().time() - started < grace_s:
            return 0
        if presence is not None:
            await presence.flush()
        return await away_unheard(uow, presence_timeout_s)

    sweeps: dict[str, Callable[[], Awaitable[int]]] = {
        **({"presence": presence_sweep} if presence_timeout_s > 0 else {}),
        "offers": lambda: in_transaction(expire_offers),
        "escalation": lambda: in_transaction(escalate_due),
        "overflow": lambda: in_transaction(overflow_due),
        "queue": lambda: in_transaction(sweep_queue),
    }
    while True:
        await asyncio.sleep(interval_s)
        for name, sweep in sweeps.items():
            try:
                done = await sweep()
                if done:
                    log.info("sweep acted", extra={"sweep": name, "count": done})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sweep failed", extra={"sweep": name, "error": repr(exc)})
