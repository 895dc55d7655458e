"""The built-in dashboard: three static files (no build step) that read the REST API in the
browser with an ops key. The page itself holds no data, so it is served without a key."""

from __future__ import annotations

from importlib import resources
from typing import Literal

from fastapi import APIRouter, Response

router = APIRouter(tags=["dashboard"], include_in_schema=False)

_ASSETS = resources.files("services.metrics") / "dashboard"
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# Only our own script and style run; API data is put in the page as text, never as markup.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    return Response((_ASSETS / name).read_bytes(), media_type=_TYPES[name], headers=_HEADERS)


@router.get("/dashboard")
async def dashboard() -> Response:
    """Live queues, agents, FRT and resolution percentiles over time, SLA attainment."""
    return _asset("index.html")


@router.get("/dashboard/{name}")
async def dashboard_asset(name: Literal["dashboard.js", "dashboard.css"]) -> Response:
    return _asset(name)
