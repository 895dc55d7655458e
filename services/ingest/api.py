"""Ingest's HTTP routes: translate, normalize, publish, answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request, Response
from opentelemetry.trace import SpanKind

from services.ingest.channels.base import to_event
from services.ingest.normalize import (
    Accepted,
    BatchIn,
    BatchOut,
    parse_message,
    read_batch,
    to_incoming,
)
from services.ingest.settings import IngestSettings
from shared.auth import INGEST, PrincipalDep, current_principal
from shared.events import InboundMessage
from shared.kafka import RoundBatcher, TopicGuard
from shared.problems import Problem, ServiceUnavailable, TooManyRequests
from shared.ratelimit import RateLimiter, retry_after_header
from shared.service import DirectRoute
from shared.tracing import kafka_headers, tracer, tracing_on

router = APIRouter()


class InboundPublisher:
    """Publishes inbound messages and waits for the broker's acknowledgement, or fails with 503."""

    def __init__(self, producer: AIOKafkaProducer, settings: IngestSettings) -> None:
        self.producer = producer
        self.topics = TopicGuard(settings, [settings.topics.inbound])
        self.topic = settings.topics.inbound
        self.timeout = settings.publish_timeout_s
        self.batcher = RoundBatcher(producer, self.topic, self.timeout)
        self.retry_after = settings.retry_after_s
        self.per_customer = RateLimiter(
            settings.rate_limit_per_customer_per_s, settings.rate_limit_per_customer_burst
        )

    async def publish(self, message: InboundMessage) -> None:
        """Publish one message and wait for the broker's ack (429 if its customer is over its
        rate limit)."""
        over = self.throttled(message, time.monotonic())
        if over:
            raise over
        await self.send([message])

    async def publish_many(self, messages: list[InboundMessage]) -> None:
        """Publish in order (one conversation's messages keep theirs) and wait for every ack;
        a customer over its rate limit is answered 429 and nothing is published."""
        now = time.monotonic()
        for m in messages:
            over = self.throttled(m, now)
            if over:
                raise over
        await self.send(messages)

    def throttled(self, message: InboundMessage, now: float) -> TooManyRequests | None:
        """Take the message's customer's token: None if allowed, else the 429 to answer."""
        wait = self.per_customer.acquire(f"{message.channel.value}:{message.customer.id}", now)
        if not wait:
            return None
        return TooManyRequests(
            f"customer {message.customer.id!r} on {message.channel.value} is sending faster "
            f"than {self.per_customer.rate:g} messages per second; retry later",
            retry_after=retry_after_header(wait),
        )

    async def send(self, messages: list[InboundMessage]) -> None:
        """Publish every message, in order, and wait for all the broker's acks; 503 if it does
        not acknowledge them all within the timeout."""
        try:
            if not self.topics.verified:
                # asyncio.timeout, not wait_for: no task per request.
                async with asyncio.timeout(self.timeout):
                    await self.topics.ensure_soon()
            await self._send_all(messages)
        except (KafkaError, TimeoutError, OSError) as exc:
            self.topics.broker_failed()
            raise ServiceUnavailable(
                f"message broker did not acknowledge the message ({type(exc).__name__}); "
                "retry later",
                retry_after=self.retry_after,
            ) from exc

    async def _send_all(self, messages: list[InboundMessage]) -> None:
        if not tracing_on():
            # No span and no context to carry: the no-op tracer still builds and attaches
            # a context per call (profiled: 6% of ingest's CPU per message).
            await self._send_records(messages, [])
            return
        with tracer.start_as_current_span(
            f"{self.topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.batch.message_count": len(messages)},
        ):
            await self._send_records(messages, kafka_headers())

    async def _send_records(
        self, messages: list[InboundMessage], headers: list[tuple[str, bytes]]
    ) -> None:
        # Queued in order with what other requests publish in this turn of the loop (under
        # the batcher's deadline); the acks are awaited together.
        add = self.batcher.add
        acks = [
            add(m.conversation_key.encode(), m.model_dump_json().encode(), headers)
            for m in messages
        ]
        if len(acks) == 1:
            await acks[0]  # no gathering future for the single-message route
        else:
            await asyncio.gather(*acks)


async def get_publisher(request: Request) -> InboundPublisher:
    publisher: InboundPublisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[InboundPublisher, Depends(get_publisher)]


async def post_message(request: Request) -> Response:
    """Accept a customer message from any channel; 202 once the broker has it."""
    # The hottest route reads its key, body and publisher itself, as a DirectRoute rather
    # than through dependencies and a body parameter: FastAPI's dependency solving and its
    # two-step body parse (json.loads, then validation) cost more than the rest of the route
    # (profiled: issue 14). Same checks in the same order, same answers.
    principal = await current_principal(request)
    message = parse_message(await request.body(), request.headers.get("content-type"))
    principal.require(INGEST)
    publisher: InboundPublisher = request.app.state.publisher
    event = to_event(to_incoming(message), received_at=datetime.now(UTC))
    await publisher.publish(event)
    return Response(_accepted(event), status_code=202, media_type="application/json")


_json_string = json.JSONEncoder(ensure_ascii=False).encode


def _accepted(event: InboundMessage) -> bytes:
    """Accepted's JSON, byte for byte as pydantic writes it, without validating what was just
    built (the route still declares Accepted as its response model)."""
    key = _json_string(event.conversation_key).encode()
    return b'{"message_id":"%s","conversation_key":%s}' % (str(event.message_id).encode(), key)


router.add_api_route(
    "/v1/messages",
    post_message,
    methods=["POST"],
    route_class_override=DirectRoute,
    status_code=202,
    response_model=Accepted,
    tags=["messages"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MessageIn"}}},
        }
    },
)


class TooManyItems(Problem):
    status, title = 422, "Unprocessable Content"


@router.post("/v1/messages/batch", response_model=BatchOut, tags=["messages"])
async def post_batch(
    batch: BatchIn, principal: PrincipalDep, publisher: PublisherDep, request: Request
) -> BatchOut:
    """Accept up to ``SWITCHBOARD_BATCH_MAX_ITEMS`` messages (relays, backfills); 200 with a
    result per item once the broker has every accepted one. An invalid item is refused alone;
    a body that is not a batch, or holds too many, is refused whole (422) and publishes
    nothing. Idempotent as single posts: a retried batch yields the same message ids."""
    principal.require(INGEST)
    limit = request.app.state.settings.batch_max_items
    if len(batch.messages) > limit:
        raise TooManyItems(
            f"a batch holds at most {limit} messages; this one holds {len(batch.messages)}"
        )
    now = time.monotonic()

    def over_rate(event: InboundMessage) -> str | None:
        over = publisher.throttled(event, now)
        return over.detail if over else None

    read = read_batch(batch.messages, received_at=datetime.now(UTC), over_rate=over_rate)
    if read.events:
        await publisher.send(read.events)
    counts = Counter(r.status for r in read.results)
    return BatchOut(
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        refused=counts["refused"],
        rate_limited=counts["rate_limited"],
        results=read.results,
    )
