"""What every service's app has: problem+json errors, /healthz and /readyz, and API docs that
need a key unless the settings make them public."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import KeyRing, current_principal
from shared.db import database_reachable
from shared.kafka import broker_reachable
from shared.problems import install_problem_handlers, problem_response
from shared.ratelimit import RateLimiter
from shared.settings import CommonSettings
from shared.telemetry import install_telemetry
from shared.textguard import TextGuard
from shared.tracing import RequestIdMiddleware

ReadinessCheck = Callable[[], Awaitable[bool]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def install_common(
    app: FastAPI,
    checks: Callable[[FastAPI], dict[str, ReadinessCheck]],
    *,
    max_body_bytes: int,
    body_limits: Mapping[str, int] | None = None,
) -> None:
    """Add error translation, the body size limit (``body_limits``: other limits for some
    paths) and the health endpoints; ``checks`` names the readiness probes."""
    install_problem_handlers(app)
    app.add_middleware(TextGuard)  # inside the size limit: it reads bodies already bounded
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, per_path=body_limits)

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


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` (or the limit ``per_path`` gives the request's
    exact path) with a problem+json 413: at once when the declared Content-Length is too
    large, else as soon as the streamed body passes the limit."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = problem_response(413, "Content Too Large", self._detail(limit))
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # FastAPI re-raises HTTPException from body reading; the handler renders it.
                raise HTTPException(413, self._detail(limit))
            return message

        await self.app(scope, counting_receive, send)

    @staticmethod
    def _detail(limit: int) -> str:
        return f"request body exceeds {limit} bytes"


def service_app(
    title: str,
    settings: CommonSettings,
    lifespan: Lifespan,
    checks: Callable[[FastAPI], dict[str, ReadinessCheck]],
    *routers: APIRouter,
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A service's FastAPI app: its settings and keys on the state, errors as problems, body
    size limit (``body_limits``: other limits for some paths), health endpoints, and its
    routes."""
    public = settings.docs_are_public
    app = FastAPI(
        title=title,
        lifespan=lifespan,
        openapi_url="/openapi.json" if public else None,
        docs_url="/docs" if public else None,
        redoc_url="/redoc" if public else None,
    )
    if not public:
        app.include_router(keyed_docs(app))
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api_keys)
    app.state.key_limiter = RateLimiter(
        settings.rate_limit_per_key_per_s, settings.rate_limit_per_key_burst
    )
    install_common(app, checks, max_body_bytes=settings.max_body_bytes, body_limits=body_limits)
    service = title.removeprefix("Switchboard ").strip()
    install_telemetry(app, service)
    app.add_middleware(RequestIdMiddleware)
    for router in routers:
        app.include_router(router)
    return app


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
