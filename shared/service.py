"""What every service's app has: problem+json errors, /healthz and /readyz, and API docs that
need a key unless the settings make them public."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import KeyRing, current_principal
from shared.db import database_reachable
from shared.kafka import broker_reachable
from shared.keytable import key_table_running
from shared.problems import install_problem_handlers, problem_response
from shared.ratelimit import RateLimiter
from shared.settings import CommonSettings
from shared.sso import sso_running
from shared.telemetry import RequestMetrics, install_telemetry
from shared.textguard import unstorable_body, unstorable_request_line
from shared.tracing import request_id_for, tracing_on

ReadinessCheck = Callable[[], Awaitable[bool]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def install_common(
    app: FastAPI,
    checks: Callable[[FastAPI], dict[str, ReadinessCheck]],
    *,
    metrics: RequestMetrics,
    max_body_bytes: int,
    body_limits: Mapping[str, int] | None = None,
    direct: Mapping[tuple[str, str], DirectRoute] | None = None,
) -> None:
    """Add error translation, the edge (request ids, request metrics, the body size limit,
    ``body_limits`` giving other limits for some paths, the text guard, and the ``direct``
    routes answered there) and the health endpoints; ``checks`` names the readiness probes."""
    install_problem_handlers(app)
    # The same edge twice: as a middleware, where requests go while spans are recorded, and,
    # with direct routes, in front of FastAPI's layers (``ServiceApp.front``) otherwise.
    edge: dict[str, Any] = {
        "metrics": metrics,
        "max_bytes": max_body_bytes,
        "per_path": body_limits,
        "direct": direct,
        "owner": app,
    }
    app.add_middleware(Edge, **edge)
    if isinstance(app, ServiceApp) and direct:
        app.front = Edge(app.behind_front, **edge)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """The broker and database this service needs are reachable."""
        results = {name: await check() for name, check in checks(app).items()}
        ready = all(results.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {k: "ok" if v else "failing" for k, v in results.items()},
        }
        return JSONResponse(body, status_code=200 if ready else 503)


class ServiceApp(FastAPI):
    """A FastAPI app whose ``front`` edge, when it has one, answers the direct routes ahead
    of FastAPI's own layers: its telemetry check, Starlette's app and error layers and the
    body-limit layer cost a fifth of ingest's CPU per message and do nothing for these
    routes (profiled under wrk, issue 14). While spans are recorded, they go the usual way,
    so FastAPI still makes the request's span."""

    front: Edge | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if (
            front is not None
            and scope["type"] == "http"
            and (scope["method"], scope["path"]) in front.direct
            and not tracing_on()
        ):
            scope["app"] = self
            if self.root_path:
                scope["root_path"] = self.root_path
            await front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def behind_front(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Where the front edge passes what it does not answer (nothing, as it is only given
        direct routes): the app as usual."""
        await super().__call__(scope, receive, send)


class Edge:
    """Every request's edge, in one ASGI layer: echo a request id (``X-Request-ID``), count
    and time the answer, refuse a body over ``max_bytes`` (or the limit ``per_path`` gives
    the request's exact path) with 413, at once when the declared Content-Length is too large,
    else as soon as the streamed body passes it, and refuse text PostgreSQL cannot store with
    422 (the body is buffered, checked and replayed to the route). Refusals are problem+json.

    One layer, not one per concern: each layer costs a closure and a call per message sent or
    received (profiled: four of them were an eighth of ingest's CPU per message, issue 14).

    A ``direct`` route (a ``DirectRoute`` by method and exact path) is answered here, past
    the checks above: its endpoint takes the request and returns the answer, and what it
    raises goes to the app's (``owner``'s) exception handlers, as in the router. Routing and
    the layers inside this one were a quarter of ingest's CPU per message once HTTP was parsed
    in C (docs/throughput.md). Anything else, and what no handler takes, goes on as usual."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: RequestMetrics,
        max_bytes: int,
        per_path: Mapping[str, int] | None = None,
        direct: Mapping[tuple[str, str], DirectRoute] | None = None,
        owner: FastAPI | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})
        self.direct = dict(direct or {})
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given_id = declared = content_type = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given_id = value
            elif name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_type = value
        request_id = request_id_for(given_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        try:
            limit = self.per_path.get(scope["path"], self.max_bytes)
            refusal = _too_large(limit) if declared.isdigit() and int(declared) > limit else None
            body = b""
            if refusal is None:
                refusal = _unstorable(unstorable_request_line(scope))
            if refusal is None:
                body, refusal = await _read_body(receive, limit)
            if refusal is None:
                found = unstorable_body(body, content_type.decode("latin-1"))
                refusal = _unstorable(found and f"{found}, which cannot be stored")
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            route = self.direct.get((scope["method"], scope["path"])) if self.direct else None
            if route is None:
                await self.app(scope, replay, send_with_id)
            else:
                await self._answer(route, scope, replay, send_with_id)
        finally:
            self.metrics.record(scope, status, time.perf_counter() - started)

    async def _answer(self, route: DirectRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """``route``'s answer, or the problem its exception handler makes of what it raised."""
        scope["route"], scope["endpoint"] = route, route.endpoint
        request = Request(scope, receive)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                # Starlette's server error layer answers 500 (or, ahead of it, the server)
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[[Request, Exception], Any] | None:
        handlers = self.owner.exception_handlers if self.owner is not None else {}
        for kind in type(exc).__mro__:
            if kind in handlers:
                found: Callable[[Request, Exception], Any] = handlers[kind]
                return found
        return None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, JSONResponse | None]:
    """The request's body, or the 413 to answer once it passes ``limit``. A client that goes
    away leaves the body read so far (the route sees it, and no one reads the answer)."""
    chunks = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            return b"", _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks), None


def _too_large(limit: int) -> JSONResponse:
    return problem_response(413, "Content Too Large", f"request body exceeds {limit} bytes")


def _unstorable(detail: str | None) -> JSONResponse | None:
    return problem_response(422, "Unprocessable Content", detail) if detail else None


class DirectRoute(APIRoute):
    """A route whose endpoint takes the Request and returns its Response itself: FastAPI
    solves no dependencies, reads no body and validates no response for it, so a hot route
    pays for none of that (ingest's single message: issue 14). What it declares (body,
    response model, status) still documents it; errors it raises are answered as anywhere."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if not inspect.iscoroutinefunction(self.endpoint):
            raise TypeError(f"{self.path}: a DirectRoute endpoint is async (request) -> Response")
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler


def service_app(
    title: str,
    settings: CommonSettings,
    lifespan: Lifespan,
    checks: Callable[[FastAPI], dict[str, ReadinessCheck]],
    *routers: APIRouter,
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A service's FastAPI app: its settings and keys on the state (the stored keys and
    single sign-on running around the service's own ``lifespan``), errors as problems, body
    size limit (``body_limits``: other limits for some paths), health endpoints, and its
    routes."""
    public = settings.docs_are_public
    app = ServiceApp(
        title=title,
        lifespan=_with_credentials(settings, lifespan),
        openapi_url="/openapi.json" if public else None,
        docs_url="/docs" if public else None,
        redoc_url="/redoc" if public else None,
    )
    # The service's own routes first: they take the traffic, and a request is matched
    # against the routes in order (none of theirs overlaps the common ones below).
    for router in routers:
        app.include_router(router)
    if not public:
        app.include_router(keyed_docs(app))
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api_keys)
    app.state.key_table = app.state.sso = None  # while the lifespan runs: _with_credentials
    app.state.key_limiter = RateLimiter(
        settings.rate_limit_per_key_per_s, settings.rate_limit_per_key_burst
    )
    service = title.removeprefix("Switchboard ").strip()
    metrics = install_telemetry(app, service)
    # Direct routes of the service's routers (included as they are, without a prefix).
    direct = {
        (method, route.path): route
        for router in routers
        for route in router.routes
        if isinstance(route, DirectRoute) and "{" not in route.path
        for method in route.methods or ()
    }
    install_common(
        app,
        checks,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        body_limits=body_limits,
        direct=direct,
    )
    return app


def _with_credentials(settings: CommonSettings, lifespan: Lifespan) -> Lifespan:
    """``lifespan`` inside the stored keys' refresh and the single sign-on verifier: both are
    there before the service's own start, so its first request already sees them."""

    @asynccontextmanager
    async def wrapped(app: FastAPI) -> AsyncIterator[None]:
        async with (
            key_table_running(app.state.keyring, settings) as table,
            sso_running(settings) as sso,
        ):
            app.state.key_table, app.state.sso = table, sso
            async with lifespan(app):
                yield

    return wrapped


def keyed_docs(app: FastAPI) -> APIRouter:
    """/openapi.json, /docs and /redoc for a caller with any valid key (a browser sends none:
    fetch the schema with the key, or make the docs public in development)."""
    router = APIRouter(dependencies=[Depends(current_principal)], include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    return router


def stateful_checks(app: FastAPI) -> dict[str, ReadinessCheck]:
    """Readiness of a service with a database and a consumer (router, metrics)."""
    return {
        "broker": lambda: broker_reachable(app.state.producer),
        "database": lambda: database_reachable(app.state.engine),
        "consumer": lambda: app.state.consume_loop.ready(),
    }
