"""Spans leave a service by OTLP/HTTP when an endpoint is configured (a stand-in collector on
loopback receives and decodes them), and log lines carry the trace they were written in."""

import json
import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from shared.logs import JsonFormatter

EMIT = """
from opentelemetry import trace
from shared.tracing import configure_tracing, tracer
configure_tracing("router", "{endpoint}")
with tracer.start_as_current_span("assign", attributes={{"switchboard.agent_id": "alice"}}):
    pass
trace.get_tracer_provider().force_flush()
"""


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set():
    received = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, self.headers["content-type"], body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        subprocess.run(
            [sys.executable, "-c", EMIT.format(endpoint=endpoint)], check=True, timeout=60
        )
    finally:
        server.shutdown()
    ((path, content_type, body),) = received
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    export = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = export.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "switchboard-router"
    (span,) = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == "assign"


def test_a_log_line_written_in_a_span_carries_its_trace_and_span_ids():
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "assigned", None, None)
    with tracer.start_as_current_span("assign") as span:
        line = json.loads(JsonFormatter().format(record))
    context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in json.loads(JsonFormatter().format(record))  # outside any span
