"""The router's Kafka side: apply each inbound message in its own transaction; sweep the queue."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import ConsumerRecord

from services.router.handlers import receive_message, sweep_queue
from services.router.routing.rules import RulesSource
from services.router.uow import UnitOfWork
from shared.events import InboundMessage
from shared.kafka import RecordHandler, parse_record

log = logging.getLogger(__name__)


def inbound_handler(uow: UnitOfWork, rules: RulesSource) -> RecordHandler:
    """Parse (or reject as poison) and apply one inbound record; returns after the commit."""

    async def handle(record: ConsumerRecord[Any, Any]) -> None:
        message = parse_record(InboundMessage, record)
        async with uow() as ctx:
            await receive_message(ctx, message, rules.current())

    return handle


async def sweep_forever(uow: UnitOfWork, interval_s: float) -> None:
    """Periodically assign queued conversations that some agent can now take."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with uow() as ctx:
                assigned = await sweep_queue(ctx)
            if assigned:
                log.info("queue sweep assigned conversations", extra={"assigned": assigned})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("queue sweep failed", extra={"error": repr(exc)})
