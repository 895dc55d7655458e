"""The outbox relay as a process of its own: ``python -m services.router.relay``.

Run it beside routers started with ``SWITCHBOARD_OUTBOX_RELAY=separate``: they leave their
events in ``router.outbox`` and notify on commit; this process publishes them. Routing then
keeps a router's core, and publishing has another (a draining router spent about a third of
its CPU relaying, docs/throughput.md). Several relay processes may run: one holds the lease
and publishes, the others take over when it stops or dies. It uses the router's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from services.router.outbox import OUTBOX_CHANNEL, router_relay
from services.router.settings import RouterSettings
from services.router.wakeups import listen
from shared.db import async_url, make_engine
from shared.kafka import ensure_topics, make_producer
from shared.logs import configure_service_logging
from shared.serving import freeze_startup_objects

log = logging.getLogger(__name__)


async def run_relay(
    settings: RouterSettings, stop: asyncio.Event, *, idle_poll_s: float = 0.5
) -> int:
    """Publish the outbox until ``stop`` is set; then publish what is left, give the lease up
    and return the number of events published (``idle_poll_s``: how often it looks without
    being notified)."""
    await ensure_topics(settings)
    engine = make_engine(settings.database_url, pool_size=2, max_overflow=0, jit=False)
    producer = make_producer(settings)
    await producer.start()
    relay = router_relay(settings, engine, producer, idle_poll_s=idle_poll_s)
    dsn = async_url(settings.database_url).replace("+asyncpg", "", 1)
    tasks = [
        asyncio.create_task(relay.run(), name="outbox-relay"),
        # A notification is a hint: without one (listener reconnecting) the relay still looks
        # every idle poll.
        asyncio.create_task(
            listen(dsn, OUTBOX_CHANNEL, lambda _payload: relay.wake(), relay.wake, "outbox-relay"),
            name="outbox-relay-listener",
        ),
    ]
    log.info("outbox relay started", extra={"relay": relay.me})
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await relay.finish()
        await producer.stop()
        await engine.dispose()
    log.info("outbox relay stopped", extra={"relay": relay.me, "published": relay.published})
    return relay.published


async def _main() -> None:
    settings = RouterSettings()
    configure_service_logging("router-relay", settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_relay(settings, stop)


if __name__ == "__main__":
    freeze_startup_objects()  # as serve() does for the services
    try:  # the services' loop, as uvicorn picks it
        import uvloop
    except ImportError:
        asyncio.run(_main())
    else:
        uvloop.run(_main())
