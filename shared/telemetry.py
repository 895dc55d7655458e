"""What every service tells Prometheus of itself at ``/metrics/service`` (ops scope): HTTP
requests by route template and status, their latency, and its consumer's progress. Label sets
stay bounded: route templates, never raw paths or ids."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import Scope

from shared.auth import OPS, PrincipalDep

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _ConsumerProgress(Collector):
    """Records applied and dead-lettered by the service's consume loop, read at scrape time."""

    def __init__(self, app: FastAPI, service: str) -> None:
        self.app, self.service = app, service

    def collect(self) -> Iterable[Metric]:
        loop = getattr(self.app.state, "consume_loop", None)
        if loop is None:
            return []
        applied = CounterMetricFamily(
            "switchboard_records_applied", "Kafka records applied.", labels=["service"]
        )
        applied.add_metric([self.service], loop.applied)
        dead = CounterMetricFamily(
            "switchboard_records_dead_lettered",
            "Kafka records sent to the dead-letter topic.",
            labels=["service"],
        )
        dead.add_metric([self.service], loop.dead_lettered)
        return [applied, dead]


class _SkippedItems(Collector):
    """Items of deliveries that published nothing (ignored: receipts, echoes, bots; unreadable:
    dead-lettered), by channel, outcome and reason, from ``app.state.skipped_items`` (a
    ``Counter`` of ``(channel, outcome, reason)``, fixed codes only) at scrape time."""

    def __init__(self, app: FastAPI, service: str) -> None:
        self.app, self.service = app, service

    def collect(self) -> Iterable[Metric]:
        counts = getattr(self.app.state, "skipped_items", None)
        if counts is None:
            return []
        skipped = CounterMetricFamily(
            "switchboard_items_skipped",
            "Items of a delivery that published no message: ignored, or unreadable and "
            "dead-lettered.",
            labels=["service", "channel", "outcome", "reason"],
        )
        for (channel, outcome, reason), count in sorted(counts.items()):
            skipped.add_metric([self.service, channel, outcome, reason], count)
        return [skipped]


class RequestMetrics:
    """HTTP requests counted and timed by route template (the edge middleware records each
    answer: ``shared.service.Edge``)."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.requests = Counter(
            "switchboard_http_requests",
            "HTTP requests answered.",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "switchboard_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["service", "method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        # Each label set's children, looked up once rather than through labels() (a lock and
        # a label check) per request; as bounded as the label sets themselves.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """One answered request of ``scope`` (its route as the router left it there)."""
        method, route = scope["method"], _route_of(scope)
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(self.service, method, route, str(status)),
                self.latency.labels(self.service, method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def _route_of(scope: Scope) -> str:
    """The template of the route that answered (the router records it in the scope)."""
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


def install_telemetry(app: FastAPI, service: str) -> RequestMetrics:
    """Expose this service's own metrics at /metrics/service; its requests' metrics, for the
    edge middleware to record."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ConsumerProgress(app, service))
    registry.register(_SkippedItems(app, service))
    metrics = RequestMetrics(registry, service)
    router = APIRouter(tags=["health"])

    @router.get("/metrics/service", response_class=Response)
    async def service_metrics(principal: PrincipalDep, request: Request) -> Response:
        """This process: HTTP requests and latency by route, consumer progress."""
        principal.require(OPS)
        return Response(
            generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    app.include_router(router)
    return metrics
