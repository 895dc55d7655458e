"""The router's app factory: engine, producer, consumer, relay and listeners live in the
lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.router.agents_api import router as agents_router
from services.router.api import router
from services.router.consumer import (
    delivery_applier,
    inbound_batch_applier,
    parse_delivery,
    parse_inbound,
)
from services.router.keys_api import router as keys_router
from services.router.model import Policy
from services.router.outbox import router_relay
from services.router.presence import Presence
from services.router.routing.rules import RulesSource
from services.router.settings import RouterSettings
from services.router.sweeps import sweep_forever
from services.router.uow import UnitOfWork
from services.router.wakeups import AgentWakeups
from shared.consume import BatchConsumeLoop
from shared.db import async_url, make_engine
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.service import ReadinessCheck, service_app, stateful_checks


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    rules = RulesSource(settings.rules_path)  # a bad rules file stops start-up, loudly

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
        # No overflow: each router use case holds one connection at a time (shared/db.py).
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=0,
            pool_timeout_s=settings.db_pool_timeout_s,
            jit=False,  # short indexed statements only; see make_engine
        )
        producer = make_producer(settings)
        await producer.start()
        relay = (
            router_relay(settings, engine, producer)
            if settings.outbox_relay == "in-process"
            else None
        )
        policy = Policy(
            offer_timeout_s=dict(settings.offer_timeout_s),
            max_missed_offers=settings.max_missed_offers,
            reopen_window=timedelta(seconds=settings.reopen_window_s),
            reroute_answered_on_leave=settings.reroute_answered_on_leave,
        )
        uow = UnitOfWork(engine, relay, settings.topics, rules, policy)
        wakeups = AgentWakeups(
            async_url(settings.database_url).replace("+asyncpg", "", 1),
            max_waits_per_agent=settings.max_waits_per_agent,
        )
        app.state.engine, app.state.producer = engine, producer
        app.state.uow, app.state.wakeups = uow, wakeups
        # In every role: any process may serve agent routes, and its flush is free when idle.
        presence = Presence(engine, flush_s=settings.presence_flush_s)
        app.state.presence = presence
        intake = (
            await _start_intake(app, settings, uow, producer) if settings.role != "api" else None
        )
        tasks = [
            *([asyncio.create_task(relay.run(), name="router-outbox-relay")] if relay else []),
            asyncio.create_task(wakeups.run(), name="router-wakeups"),
            asyncio.create_task(presence.run(), name="router-presence"),
        ]
        try:
            yield
        finally:
            if intake is not None:
                await intake.aclose()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if relay is not None:
                await relay.finish()
            await producer.stop()
            await engine.dispose()

    checks = api_checks if settings.role == "api" else stateful_checks
    return service_app(
        "Switchboard router", settings, lifespan, checks, agents_router, router, keys_router
    )


def api_checks(app: FastAPI) -> dict[str, ReadinessCheck]:
    """Readiness of a router that only serves the agent API (no consumer of its own)."""
    return {name: check for name, check in stateful_checks(app).items() if name != "consumer"}


async def _start_intake(
    app: FastAPI, settings: RouterSettings, uow: UnitOfWork, producer: AIOKafkaProducer
) -> contextlib.AsyncExitStack:
    """The intake of inbound messages and delivery statuses, and the queue sweep, started;
    closing the stack stops them. The inbound loop is ``app.state.consume_loop``, the delivery
    statuses' ``app.state.deliveries_loop``."""
    stack = contextlib.AsyncExitStack()
    consumer = make_consumer(settings, settings.topics.inbound, group_id=settings.consumer_group)
    deliveries_group = f"{settings.consumer_group}-deliveries"
    deliveries_consumer = make_consumer(
        settings,
        settings.topics.delivery_events,
        group_id=deliveries_group,
        # A delivery status is for display: an idle consumer polling every 5 ms cost the
        # router 4-8% of its CPU draining a backlog.
        fetch_max_wait_ms=250,
    )
    # Both groups join at once: a join can take seconds.
    await asyncio.gather(consumer.start(), deliveries_consumer.start())
    stack.push_async_callback(consumer.stop)
    stack.push_async_callback(deliveries_consumer.stop)
    loop = BatchConsumeLoop(
        consumer,
        producer,
        parse=parse_inbound,
        apply=inbound_batch_applier(uow),
        dead_letter_topic=settings.topics.dead_letter,
        group_id=settings.consumer_group,
        max_records=settings.inbound_batch_max_records,
        linger_s=settings.inbound_linger_ms / 1000,
    )
    deliveries = BatchConsumeLoop(
        deliveries_consumer,
        producer,
        parse=parse_delivery,
        apply=delivery_applier(uow),
        dead_letter_topic=settings.topics.dead_letter,
        group_id=deliveries_group,
        max_records=500,
    )
    sweep = asyncio.create_task(
        sweep_forever(
            uow,
            settings.queue_sweep_interval_s,
            presence_timeout_s=settings.presence_timeout,
            presence=app.state.presence,
        ),
        name="router-queue-sweep",
    )

    async def stop_sweep() -> None:
        sweep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweep

    stack.push_async_callback(stop_sweep)
    app.state.deliveries_loop = deliveries
    deliveries.start()
    stack.push_async_callback(deliveries.stop)
    app.state.consume_loop = loop
    loop.start()
    stack.push_async_callback(loop.stop)  # callbacks run last-in first-out: loops stop first
    return stack
