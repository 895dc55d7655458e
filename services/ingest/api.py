"""Ingest's HTTP routes: translate, normalize, publish, answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request

from services.ingest.normalize import Accepted, MessageIn, normalize
from services.ingest.settings import IngestSettings
from shared.auth import INGEST, PrincipalDep
from shared.events import InboundMessage
from shared.kafka import publish
from shared.problems import ServiceUnavailable

router = APIRouter()


class InboundPublisher:
    """Publishes inbound messages and waits for the broker's acknowledgement, or fails with 503."""

    def __init__(self, producer: AIOKafkaProducer, settings: IngestSettings) -> None:
        self.producer = producer
        self.topic = settings.topics.inbound
        self.timeout = settings.publish_timeout_s
        self.retry_after = settings.retry_after_s

    async def publish(self, message: InboundMessage) -> None:
        try:
            await asyncio.wait_for(
                publish(self.producer, self.topic, message.conversation_key, message),
                self.timeout,
            )
        except (KafkaError, TimeoutError) as exc:
            raise ServiceUnavailable(
                f"message broker did not acknowledge the message ({type(exc).__name__}); "
                "retry later",
                retry_after=self.retry_after,
            ) from exc


def get_publisher(request: Request) -> InboundPublisher:
    publisher: InboundPublisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[InboundPublisher, Depends(get_publisher)]


@router.post("/v1/messages", status_code=202, response_model=Accepted, tags=["messages"])
async def post_message(
    message: MessageIn, principal: PrincipalDep, publisher: PublisherDep
) -> Accepted:
    """Accept a customer message from any channel; 202 once the broker has it."""
    principal.require(INGEST)
    event = normalize(message, received_at=datetime.now(UTC))
    await publisher.publish(event)
    return Accepted(message_id=event.message_id, conversation_key=event.conversation_key)
