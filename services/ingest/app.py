"""Ingest's app factory: the producer lives in the lifespan, nowhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.ingest.api import InboundPublisher, router
from services.ingest.settings import IngestSettings
from services.ingest.webhooks import router as channel_router
from shared.auth import KeyRing
from shared.kafka import broker_reachable, ensure_topics, make_producer
from shared.service import install_common


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
        producer = make_producer(settings)
        await producer.start()
        app.state.producer = producer
        app.state.publisher = InboundPublisher(producer, settings)
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(title="Switchboard ingest", lifespan=lifespan)
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api_keys)
    install_common(
        app,
        lambda a: {"broker": lambda: broker_reachable(a.state.producer)},
        max_body_bytes=settings.max_body_bytes,
    )
    app.include_router(router)
    app.include_router(channel_router)
    return app
