"""What every service's app has: problem+json errors, /healthz and /readyz."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from shared.problems import install_problem_handlers

ReadinessCheck = Callable[[], Awaitable[bool]]


def install_common(app: FastAPI, checks: Callable[[FastAPI], dict[str, ReadinessCheck]]) -> None:
    """Add error translation and the health endpoints; ``checks`` names the readiness probes."""
    install_problem_handlers(app)

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
