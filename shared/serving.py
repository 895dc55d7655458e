"""How every service is served: uvicorn's httptools protocol (HTTP parsed in C; pure-Python h11
cost the router about a third of its CPU per request, docs/throughput.md) with deadlines on
slow clients and a cap on open connections, so idle or slow sockets cannot use up a process's
file descriptors.

uvicorn times out only the idle time between requests (and any byte resets that), so a
connection that never sends a request, or sends it a byte at a time, is held for ever; and its
``limit_concurrency`` counts only when a request has arrived. A connection here is always in
one phase:

- ``headers``: waiting for a request's headers; closed ``header_timeout_s`` after entering it.
- ``keep-alive``: between requests; uvicorn closes it after ``keepalive_timeout_s``.
- ``body``: reading a request's body; closed ``body_timeout_s`` after its headers arrived.
- ``app``: the request is read and the app works on it; no deadline (a long-poll waits here).

Past ``max_connections`` a new connection closes the one idle longest (``headers`` or
``keep-alive``: it holds no work), so slow sockets cannot crowd out a client that sends its
request at once; if none is idle, the new connection's request is answered 503.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
from typing import Any, ClassVar, Literal

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import CommonSettings

logger = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: the database pool, the broker's
# connections, the listening socket, log and rule files. asyncio's accept loop logs once per
# pending connection while descriptors are exhausted (issue 13), so the cap stays below them.
FD_RESERVE = 256

Phase = Literal["headers", "keep-alive", "body", "app", "closed"]


class ConnectionGuard:
    """One server's connection cap, its read deadlines, and its idle connections, oldest
    first."""

    def __init__(
        self,
        *,
        max_connections: int,
        header_timeout_s: float,
        body_timeout_s: float,
        keepalive_timeout_s: float,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.idle: dict[GuardedProtocol, None] = {}  # insertion order: idle longest first

    def admit(self, newcomer: GuardedProtocol) -> None:
        """Make room for a new connection: past the cap, close the connection idle longest;
        with none idle, the newcomer's request is answered 503."""
        if len(newcomer.connections) <= self.max_connections:
            return
        oldest = next(iter(self.idle), None)
        if oldest is None:
            # uvicorn answers 503 (and closes) when the open connections reach this.
            newcomer.limit_concurrency = 0
            logger.warning("connection cap reached and none idle: answering 503")
            return
        del self.idle[oldest]
        logger.info("connection cap reached: closed the connection idle longest")
        oldest.transport.close()

    def protocol_class(self) -> type[GuardedProtocol]:
        """The protocol uvicorn builds per connection, bound to this guard."""
        guard = self

        class Protocol(GuardedProtocol):
            pass

        Protocol.guard = guard
        return Protocol


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the phases and deadlines of this module's
    docstring."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.guard.keepalive_timeout_s  # type: ignore[assignment]
        self.phase: Phase | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.reading_body = False  # from a request's headers to its last body byte

    def on_headers_complete(self) -> None:
        self.reading_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.reading_body = False
        super().on_message_complete()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.admit(self)
        self._track()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._enter("closed")

    def _current_phase(self) -> Phase:
        if self.transport.is_closing():
            return "closed"
        if self.reading_body:
            return "body"
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests:
            return "headers" if self.timeout_keep_alive_task is None else "keep-alive"
        return "app"

    def _track(self) -> None:
        self._enter(self._current_phase())

    def _enter(self, phase: Phase) -> None:
        if phase == self.phase:
            return  # a deadline runs from entering its phase, whatever arrives meanwhile
        self.phase = phase
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.guard.idle.pop(self, None)
        if phase in ("headers", "keep-alive"):
            self.guard.idle[self] = None
        if phase == "headers":
            self._expire_after(self.guard.header_timeout_s, "request headers")
        elif phase == "body":
            self._expire_after(self.guard.body_timeout_s, "request body")

    def _expire_after(self, seconds: float, what: str) -> None:
        def expire() -> None:
            if not self.transport.is_closing():
                logger.info("closed a connection: its %s took over %gs", what, seconds)
                self.transport.close()

        self.deadline = self.loop.call_later(seconds, expire)


def connection_cap(configured: int) -> int:
    """``configured``, lowered to what the file-descriptor limit leaves for connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    room = max(1, soft - FD_RESERVE)
    if room < configured:
        logger.warning(
            "max_connections lowered from %d to %d by the file-descriptor limit (%d)",
            configured,
            room,
            soft,
        )
    return min(configured, room)


def raise_fd_limit() -> None:
    """Raise this process's soft file-descriptor limit to its hard limit (as Go programs do):
    the connection cap, not a low default, is what bounds the connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def freeze_startup_objects() -> None:
    """Move what exists now (modules, classes, the app: about 120,000 objects) out of the
    garbage collector's reach. It lives until exit anyway, and every full collection walked
    it: under load, ingest ran one every second, each held every request for up to 160 ms
    (ingest's p99) and together they were a tenth of its CPU (measured with ``gc.callbacks``,
    issue 14). The same as ``gc.freeze`` after start in a pre-forking server."""
    gc.collect()
    gc.freeze()


def uvicorn_config(
    app: ASGIApp, settings: CommonSettings, *, host: str, port: int
) -> uvicorn.Config:
    """The uvicorn configuration every service runs with."""
    guard = ConnectionGuard(
        max_connections=connection_cap(settings.max_connections),
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        keepalive_timeout_s=settings.keepalive_timeout_s,
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guard.protocol_class(),
        ws="none",  # no service speaks WebSocket: an upgrade would leave the guard
        lifespan="on",
        log_config=None,  # shared.logs configures logging
    )


def serve(app: ASGIApp, settings: CommonSettings, *, host: str, port: int) -> None:
    """Run ``app`` until it is told to stop (SIGINT or SIGTERM)."""
    raise_fd_limit()
    freeze_startup_objects()
    uvicorn.Server(uvicorn_config(app, settings, host=host, port=port)).run()
