"""The metrics service's app factory: engine, producer (dead letters and the outbox relay's
SLA events) and consumer live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.api import router
from services.metrics.calendar_api import router as calendar_router
from services.metrics.consumer import (
    FoldLoop,
    OneByOneLoop,
    batch_folder,
    event_handler,
    polled_parser,
)
from services.metrics.dashboard import router as dashboard_router
from services.metrics.fold_clock import FoldClock
from services.metrics.report_cache import ReportCache
from services.metrics.scrape_store import ScrapeStore
from services.metrics.settings import MetricsSettings
from services.metrics.sla import sla_forever
from services.metrics.sla_store import OUTBOX_SCHEMA
from shared.db import make_engine, make_sessionmaker
from shared.kafka import TopicGuard, ensure_topics, make_consumer, make_producer
from shared.outbox import OutboxRelay
from shared.service import service_app, stateful_checks

log = logging.getLogger(__name__)


async def _warm(reports: ReportCache, consumer: AIOKafkaConsumer, poll_s: float = 0.5) -> None:
    """Read the report columns once the consumer has caught up with its topics, so the first
    report does not wait for them; if the database is not there yet, the first report reads
    them instead. A backlog is folded first: read during it, the columns of 1,000,000
    conversations took a third of the process's CPU while it caught up (docs/throughput.md).
    A report asked before then reads them itself."""
    try:
        while True:  # the lag is known by asking: nothing signals it
            if await _caught_up(consumer):
                break
            await asyncio.sleep(poll_s)
        await reports.warm()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.warning("report columns not read at start", exc_info=True)


async def _caught_up(consumer: AIOKafkaConsumer) -> bool:
    """Whether the consumer has read to the end of every partition it was last told of (not
    before it has joined its group and been given some)."""
    if not consumer.assignment():
        return False
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True


async def _folded_to(
    consumer: AIOKafkaConsumer, loop: FoldLoop | OneByOneLoop, clock: FoldClock, now: datetime
) -> Mapping[int, datetime]:
    """How far this process folded each partition of the conversation-events topic it knows
    of; ``now`` for those it has caught up on: nothing in hand (no batch being settled), and
    its position at the end the broker last told of."""
    caught_up = []
    if not loop.settling:
        for tp in consumer.assignment():
            if tp.topic != clock.topic:
                continue
            end = consumer.highwater(tp)
            if end is not None and await consumer.position(tp) >= end and not loop.settling:
                caught_up.append(tp.partition)
    return clock.readings(caught_up, now)


async def _compact_forever(sessions: async_sessionmaker[AsyncSession], interval_s: float) -> None:
    """Fold the scrape's deltas into its totals now and then, so a scrape sums few rows."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with sessions() as session, session.begin():
                await ScrapeStore(session).compact()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("scrape compaction failed", extra={"error": repr(exc)})


def create_app(settings: MetricsSettings | None = None) -> FastAPI:
    settings = settings or MetricsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        sessions = make_sessionmaker(engine)
        producer = make_producer(settings)
        await producer.start()
        consumer = make_consumer(
            settings,
            settings.topics.conversation_events,
            settings.topics.agent_events,
            group_id=settings.consumer_group,
            fetch_max_wait_ms=settings.events_fetch_max_wait_ms,
        )
        clock = FoldClock(settings.topics.conversation_events)
        loop: FoldLoop | OneByOneLoop
        if settings.fold_batch_max_records:
            loop = FoldLoop(
                consumer,
                producer,
                parse=polled_parser(settings.topics),
                apply=batch_folder(sessions, clock),
                dead_letter_topic=settings.topics.dead_letter,
                group_id=settings.consumer_group,
                max_records=settings.fold_batch_max_records,
                linger_s=settings.fold_linger_ms / 1000,
            )
        else:
            loop = OneByOneLoop(
                consumer,
                producer,
                handle=event_handler(sessions, settings.topics, clock),
                dead_letter_topic=settings.topics.dead_letter,
                group_id=settings.consumer_group,
            )
        app.state.engine, app.state.sessions, app.state.producer = engine, sessions, producer
        app.state.consume_loop = loop
        window = settings.report_window_days
        app.state.reports = reports = ReportCache(
            sessions, window=timedelta(days=window) if window else None
        )

        loop.start()  # joins the consumer group first, behind the app (consumer.py)
        warm = asyncio.create_task(_warm(reports, consumer))

        async def folded_to(now: datetime) -> Mapping[int, datetime]:
            return await _folded_to(consumer, loop, clock, now)

        # The SLA sweep's events leave through metrics' outbox; every metrics process runs a
        # relay, and the one holding the lease publishes (woken by its own sweeps, polling for
        # the others').
        relay = OutboxRelay(engine, producer, TopicGuard(settings), schema=OUTBOX_SCHEMA)
        relaying = asyncio.create_task(relay.run(), name="metrics-outbox-relay")
        sla = asyncio.create_task(
            sla_forever(sessions, relay, settings.topics, settings.sla_sweep_interval_s, folded_to)
        )
        compact = asyncio.create_task(_compact_forever(sessions, settings.scrape_compact_s))
        try:
            yield
        finally:
            sla.cancel()
            warm.cancel()
            compact.cancel()
            await asyncio.gather(sla, warm, compact, return_exceptions=True)
            relaying.cancel()  # after the last sweep: what it left is published below
            with contextlib.suppress(asyncio.CancelledError):
                await relaying
            await relay.finish()
            await loop.stop()
            await consumer.stop()
            await producer.stop()
            await engine.dispose()

    return service_app(
        "Switchboard metrics",
        settings,
        lifespan,
        stateful_checks,
        router,
        calendar_router,
        dashboard_router,
    )
