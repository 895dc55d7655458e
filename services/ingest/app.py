"""Ingest's app factory: the producer, the reply dispatcher and its HTTP client live in the
lifespan, nowhere else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.ingest.api import InboundPublisher, router
from services.ingest.language import detect_language
from services.ingest.normalize import MessageIn
from services.ingest.outbound.dispatcher import Dispatcher
from services.ingest.outbound.senders import make_senders
from services.ingest.settings import IngestSettings
from services.ingest.webhooks import router as channel_router
from shared.consume import ConsumeLoop
from shared.kafka import broker_reachable, ensure_topics, make_consumer, make_producer
from shared.service import service_app


async def _start_dispatch(
    consumer: AIOKafkaConsumer, loop: ConsumeLoop, settings: IngestSettings
) -> None:
    if settings.dispatcher_enabled:
        await consumer.start()
        loop.start()


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
        # Load the language model now, not on the first customer's request.
        await asyncio.to_thread(detect_language, "warm up the language model")
        producer = make_producer(settings)
        await producer.start()
        app.state.producer = producer
        app.state.publisher = InboundPublisher(producer, settings)
        http = httpx.AsyncClient(timeout=settings.delivery_timeout_s)
        dispatcher = Dispatcher(
            make_senders(settings, http),
            producer,
            settings.topics,
            max_attempts=settings.delivery_max_attempts,
            backoff_s=settings.delivery_backoff_s,
        )
        consumer = make_consumer(
            settings, settings.topics.outbound, group_id=settings.dispatcher_group
        )
        loop = ConsumeLoop(
            consumer,
            producer,
            handle=dispatcher.handler(),
            dead_letter_topic=settings.topics.dead_letter,
            group_id=settings.dispatcher_group,
        )
        # Its records applied and dead-lettered show in /metrics/service (shared/telemetry.py).
        app.state.consume_loop = loop
        # Joining the group takes a few seconds on some brokers: ingest answers meanwhile.
        starting = asyncio.create_task(_start_dispatch(consumer, loop, settings))
        try:
            yield
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await loop.stop()
            await consumer.stop()
            await http.aclose()
            await producer.stop()

    app = service_app(
        "Switchboard ingest",
        settings,
        lifespan,
        lambda a: {"broker": lambda: _broker_ready(a)},
        router,
        channel_router,
        body_limits={"/v1/messages/batch": settings.batch_max_body_bytes},
    )
    _document_models(app, MessageIn)
    return app


def _document_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add ``models`` to the OpenAPI components: routes that parse their own body (the generic
    message, for speed; a batch's items, one by one) refer to them rather than declare them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # cached on the app: completed once
            _, defs = models_json_schema(
                [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


async def _broker_ready(app: FastAPI) -> bool:
    """The broker answers; when it does not, the inbound topic is checked again before the
    next message is accepted (a broker may come back without its topics)."""
    reachable = await broker_reachable(app.state.producer)
    if not reachable:
        app.state.publisher.topics.broker_failed()
    return reachable
