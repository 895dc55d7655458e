"""One trace from the webhook to the assignment and on to metrics, across the three services
(in one process here, so one in-memory exporter sees every span), with the context carried
in Kafka headers and through the router's outbox."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.ingest.app import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.metrics.app import create_app as metrics_app
from services.metrics.settings import MetricsSettings
from services.router.app import create_app as router_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, running
from tests.integration.routerkit import put_agent

TG = "trace-secret"


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    exporter.clear()


async def test_one_trace_runs_from_the_webhook_to_the_assignment_and_to_metrics(
    spans, common, ids, broker, topics
):
    agent = ids.agent_ids[0]
    router_settings = RouterSettings(**common | {"consumer_group": common["consumer_group"] + "r"})
    metrics_settings = MetricsSettings(
        **common | {"consumer_group": common["consumer_group"] + "m"}
    )
    async with (
        running(
            ingest_app(
                IngestSettings(
                    **common
                    | {"dispatcher_enabled": True, "dispatcher_group": common["consumer_group"]},
                    telegram_secret_token=TG,
                )
            )
        ) as ingest,
        running(router_app(router_settings)) as router,
        running(metrics_app(metrics_settings)) as metrics,
    ):
        await put_agent(
            router, ids, agent, skills={"funds": 3, "general": 2}, capacity={"telegram": 2}
        )
        update = {
            "update_id": 9001,
            "message": {
                "message_id": 77,
                "date": 1764000000,
                "from": {"id": 5, "is_bot": False, "first_name": "Mei"},
                "chat": {"id": 5, "type": "private"},
                "text": "my withdrawal has not arrived",
            },
        }
        answer = await ingest.post(
            "/v1/channels/telegram/webhook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": TG, "X-Request-ID": "req-42"},
        )
        assert answer.status_code == 200 and answer.headers["x-request-id"] == "req-42"
        unnamed = await ingest.get("/healthz")
        assert len(unnamed.headers["x-request-id"]) == 32  # one is made when none was sent

        webhook = None

        def find_webhook():
            return next(
                (
                    s
                    for s in spans.get_finished_spans()
                    if s.name == "POST /v1/channels/telegram/webhook"
                ),
                None,
            )

        async def traced_to_metrics():
            nonlocal webhook
            webhook = find_webhook()
            if webhook is None:
                return None
            same = [
                s
                for s in spans.get_finished_spans()
                if s.context.trace_id == webhook.context.trace_id
            ]
            groups = {s.attributes.get("messaging.consumer.group.name") for s in same}
            return same if metrics_settings.consumer_group in groups else None

        trace_spans = await eventually(traced_to_metrics, timeout=30, what="the trace at metrics")
        await metrics.get("/healthz")

        # The agent's reply is a trace of its own, from the agent's request to the delivery
        # attempt in ingest's dispatcher (no Telegram token here, so Telegram is not called).
        conversation = next(s for s in trace_spans if s.name == "assign").attributes[
            "switchboard.conversation_id"
        ]
        replied = await router.post(
            f"/v1/conversations/{conversation}/replies",
            headers=ids.as_agent(agent),
            json={"agent_id": agent, "text": "we are on it"},
        )
        assert replied.status_code in (200, 201), replied.text

        async def delivered():
            reply = next(
                (
                    s
                    for s in spans.get_finished_spans()
                    if s.name == "POST /v1/conversations/{conversation_id}/replies"
                ),
                None,
            )
            if reply is None:
                return None
            return [
                s
                for s in spans.get_finished_spans()
                if s.context.trace_id == reply.context.trace_id
                and s.name == f"{topics.outbound} process"
            ]

        assert await eventually(delivered, timeout=30, what="the reply's trace at the dispatcher")
    names = {s.name for s in trace_spans}
    groups = {s.attributes.get("messaging.consumer.group.name") for s in trace_spans}
    assert "assign" in names
    assert f"{topics.inbound} publish" in names
    assert {router_settings.consumer_group, metrics_settings.consumer_group} <= groups
    assign = next(s for s in trace_spans if s.name == "assign")
    assert assign.attributes["switchboard.agent_id"] == agent
    assert webhook.parent is None  # the webhook starts the trace
    print(f"\none trace, {len(trace_spans)} spans: {sorted(names)}")


async def test_a_traced_single_message_post_has_its_request_span_with_the_publish_inside(
    spans, common, ids, topics
):
    # The single-message route is answered ahead of FastAPI's layers only while nothing is
    # traced (shared/service.py ServiceApp): traced, FastAPI still makes the request's span.
    async with running(ingest_app(IngestSettings(**common))) as ingest:
        answer = await ingest.post(
            "/v1/messages",
            json={
                "channel": "chat",
                "channel_message_id": "traced-1",
                "conversation_ref": "traced-thread",
                "customer": {"id": "traced-customer"},
                "text": "is the exchange down?",
            },
            headers=ids.as_ingest,
        )
        assert answer.status_code == 202, answer.text
    from opentelemetry.trace import SpanKind

    publish = next(s for s in spans.get_finished_spans() if s.name == f"{topics.inbound} publish")
    request = next(
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.SERVER and s.context.trace_id == publish.context.trace_id
    )
    assert request.attributes["http.request.method"] == "POST"
    assert publish.parent is not None and publish.parent.span_id == request.context.span_id
