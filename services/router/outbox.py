"""The router's outbox relay: publishes what committed transactions left in ``router.outbox``
(the relay itself, shared with metrics, is ``shared/outbox.py``'s)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import outbox
from shared.kafka import TopicGuard


class OutboxRelay(outbox.OutboxRelay):
    """The relay of ``router.outbox``, holding ``router.relay_lease``."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        topics: TopicGuard,
        *,
        idle_poll_s: float = 0.5,
        lease_s: float = 5.0,
        linger_s: float = 0.0,
    ) -> None:
        super().__init__(
            engine,
            producer,
            topics,
            schema="router",
            idle_poll_s=idle_poll_s,
            lease_s=lease_s,
            linger_s=linger_s,
        )
