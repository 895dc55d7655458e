"""The edge every service's requests pass: request ids, request metrics, the body limit and
the text guard, in one ASGI layer, driven here by hand-made ASGI messages."""

import json

from prometheus_client import CollectorRegistry

from shared.service import Edge
from shared.telemetry import RequestMetrics


class Route:
    """An ASGI app that reads the whole body and answers 200 with its length."""

    def __init__(self):
        self.bodies = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


async def call(edge, chunks, headers=(), path="/v1/things"):
    """Send ``chunks`` as one request's body; the answer's status, headers and body."""
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent = []

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
    }
    await edge(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def edge_with(route, **limits):
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry, "test")
    return Edge(route, metrics=metrics, **limits), registry


async def test_a_streamed_body_is_replayed_whole_to_the_route_and_the_answer_counted():
    route = Route()
    edge, registry = edge_with(route, max_bytes=100)
    status, headers, body = await call(edge, [b'{"a": ', b'"b"}'], [(b"x-request-id", b"req-7")])
    assert (status, body) == (200, b"10") and route.bodies == [b'{"a": "b"}']
    assert headers[b"x-request-id"] == b"req-7"
    labels = {"service": "test", "method": "POST", "route": "unmatched", "status": "200"}
    assert registry.get_sample_value("switchboard_http_requests_total", labels) == 1


async def test_a_streamed_body_past_its_limit_is_refused_413_before_the_route_runs():
    route = Route()
    edge, registry = edge_with(route, max_bytes=100, per_path={"/big": 1000})
    status, headers, body = await call(edge, [b"x" * 60, b"x" * 60])
    assert status == 413 and headers[b"content-type"] == b"application/problem+json"
    assert json.loads(body)["detail"] == "request body exceeds 100 bytes"
    assert route.bodies == [] and len(headers[b"x-request-id"]) == 32
    labels = {"service": "test", "method": "POST", "route": "unmatched", "status": "413"}
    assert registry.get_sample_value("switchboard_http_requests_total", labels) == 1
    assert (await call(edge, [b"x" * 60, b"x" * 60], path="/big"))[0] == 200


async def test_a_declared_length_past_the_limit_is_refused_without_reading_the_body():
    route = Route()
    edge, _ = edge_with(route, max_bytes=100)
    status, _, body = await call(edge, [b"{}"], [(b"content-length", b"101")])
    assert status == 413 and route.bodies == []
    # The same problem as a streamed body past the limit: one title, one detail.
    _, _, streamed = await call(edge, [b"x" * 60, b"x" * 60])
    declared = json.loads(body)
    assert declared == json.loads(streamed)
    assert declared["title"] == "Content Too Large"


async def test_unstorable_text_in_the_body_or_a_header_is_refused_422():
    route = Route()
    edge, _ = edge_with(route, max_bytes=1000)
    status, _, body = await call(edge, [b'{"a": "\\u0000"}'])
    assert status == 422 and json.loads(body)["detail"] == (
        "body.a contains a NUL character, which cannot be stored"
    )
    status, _, body = await call(edge, [b"{}"], [(b"x-note", b"a\x00b")])
    assert status == 422 and json.loads(body)["detail"] == (
        "the x-note header contains a NUL character"
    )
    assert route.bodies == []
