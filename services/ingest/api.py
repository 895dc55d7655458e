"""Ingest's HTTP routes: translate, normalize, publish, answer."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request
from opentelemetry.trace import SpanKind

from services.ingest.channels.base import to_event
from services.ingest.normalize import Accepted, MessageIn, to_incoming
from services.ingest.settings import IngestSettings
from shared.auth import INGEST, PrincipalDep
from shared.events import InboundMessage
from shared.kafka import TopicGuard
from shared.problems import ServiceUnavailable, TooManyRequests
from shared.ratelimit import RateLimiter, retry_after_header
from shared.tracing import kafka_headers, tracer

router = APIRouter()


class InboundPublisher:
    """Publishes inbound messages and waits for the broker's acknowledgement, or fails with 503."""

    def __init__(self, producer: AIOKafkaProducer, settings: IngestSettings) -> None:
        self.producer = producer
        self.topics = TopicGuard(settings, [settings.topics.inbound])
        self.topic = settings.topics.inbound
        self.timeout = settings.publish_timeout_s
        self.retry_after = settings.retry_after_s
        self.per_customer = RateLimiter(
            settings.rate_limit_per_customer_per_s, settings.rate_limit_per_customer_burst
        )

    async def publish(self, message: InboundMessage) -> None:
        await self.publish_many([message])

    async def publish_many(self, messages: list[InboundMessage]) -> None:
        """Publish in order (one conversation's messages keep theirs) and wait for every ack;
        a customer over its rate limit is answered 429 and nothing is published."""
        now = time.monotonic()
        for m in messages:
            wait = self.per_customer.acquire(f"{m.channel.value}:{m.customer.id}", now)
            if wait:
                raise TooManyRequests(
                    f"customer {m.customer.id!r} on {m.channel.value} is sending faster than "
                    f"{self.per_customer.rate:g} messages per second; retry later",
                    retry_after=retry_after_header(wait),
                )
        try:
            if not self.topics.verified:
                await asyncio.wait_for(self.topics.ensure(), self.timeout)
            await asyncio.wait_for(self._send_all(messages), self.timeout)
        except (KafkaError, TimeoutError, OSError) as exc:
            self.topics.broker_failed()
            raise ServiceUnavailable(
                f"message broker did not acknowledge the message ({type(exc).__name__}); "
                "retry later",
                retry_after=self.retry_after,
            ) from exc

    async def _send_all(self, messages: list[InboundMessage]) -> None:
        with tracer.start_as_current_span(
            f"{self.topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.batch.message_count": len(messages)},
        ):
            headers = kafka_headers()
            sent = [
                await self.producer.send(
                    self.topic,
                    m.model_dump_json().encode(),
                    key=m.conversation_key.encode(),
                    headers=headers,
                )
                for m in messages
            ]
            for delivery in sent:
                await delivery


async def get_publisher(request: Request) -> InboundPublisher:
    publisher: InboundPublisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[InboundPublisher, Depends(get_publisher)]


@router.post("/v1/messages", status_code=202, response_model=Accepted, tags=["messages"])
async def post_message(
    message: MessageIn, principal: PrincipalDep, publisher: PublisherDep
) -> Accepted:
    """Accept a customer message from any channel; 202 once the broker has it."""
    principal.require(INGEST)
    event = to_event(to_incoming(message), received_at=datetime.now(UTC))
    await publisher.publish(event)
    return Accepted(message_id=event.message_id, conversation_key=event.conversation_key)
