"""OpenTelemetry traces: a span per HTTP request (FastAPI's own), per Kafka publish, per
record applied, per assignment; the context crosses Kafka in W3C ``traceparent`` headers (and
waits in the router's outbox with the event). Exported over OTLP/HTTP when
``SWITCHBOARD_OTLP_ENDPOINT`` is set; off otherwise (the no-op tracer costs next to nothing)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

tracer = trace.get_tracer("switchboard")
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}\Z")


def configure_tracing(service: str, endpoint: str | None) -> None:
    """Export this process's spans to an OTLP/HTTP collector at ``endpoint``, if given."""
    if not endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"switchboard-{service}"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"))
    )
    trace.set_tracer_provider(provider)


def current_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (empty when nothing is traced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def kafka_headers(carrier: dict[str, str] | None = None) -> list[tuple[str, bytes]]:
    """Kafka record headers carrying ``carrier`` (default: the current context)."""
    items = current_carrier() if carrier is None else carrier
    return [(k, v.encode()) for k, v in items.items()]


def carrier_json() -> str | None:
    """The current context, for a row that will be published later (the outbox)."""
    carrier = current_carrier()
    return json.dumps(carrier) if carrier else None


def context_from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Context:
    carrier = {k: v.decode(errors="replace") for k, v in headers or () if v is not None}
    return propagate.extract(carrier)


def request_id_for(given: bytes) -> bytes:
    """The id to echo in ``X-Request-ID``: the caller's, if it sent a sane one; else a new
    one, 32 hex digits. (FastAPI itself makes the SERVER span of each request, joining the
    caller's trace.) A request id only tells requests apart, it guards nothing: 128 bits of
    ``random``, without the system call and the UUID object of uuid4 per request."""
    if _REQUEST_ID.match(given):
        return given
    return b"%032x" % random.getrandbits(128)


def carrier_json_of(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """A record's trace context (its headers), for work done later in its name."""
    carrier = {k: v.decode(errors="replace") for k, v in headers or () if v is not None}
    return json.dumps(carrier) if carrier else None


def record_span(
    name: str,
    carrier: str | None,
    attributes: Mapping[str, str | int],
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    start_ns: int | None = None,
) -> None:
    """A finished span in the trace of ``carrier`` (a W3C carrier as JSON; None: the current
    context): one item's part of work done for a batch."""
    context = propagate.extract(json.loads(carrier)) if carrier else None
    span = tracer.start_span(
        name, context=context, kind=kind, attributes=attributes, start_time=start_ns
    )
    span.end()


_UNREADABLE = object()


def tracing_on() -> bool:
    """Whether spans are recorded in this process (a tracer provider was set, as
    ``configure_tracing`` does). Read from the API's global: ``get_tracer_provider()`` looks
    ``OTEL_PYTHON_TRACER_PROVIDER`` up in the environment on every call while none is set,
    which was 8% of ingest's CPU per message (a provider named only by that variable is not
    seen here; this codebase sets its own)."""
    provider = getattr(trace, "_TRACER_PROVIDER", _UNREADABLE)
    if provider is _UNREADABLE:  # another OpenTelemetry API: ask it
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return provider is not None
