"""Each service's own metrics: requests by route template, latency, consumer progress."""

from prometheus_client.parser import text_string_to_metric_families

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.events import Channel, Priority
from tests.conftest import eventually, running
from tests.integration.scripted import Script, publish


async def test_service_metrics_count_requests_by_route_template_and_records_applied(
    common, ids, broker, topics
):
    app = create_app(MetricsSettings(**common))
    async with running(app) as client:
        script = Script(Channel.CHAT, Priority.HIGH).message(0).classified(0)
        sent = await publish(broker, topics, [script])

        async def applied():
            return app.state.consume_loop.applied >= sent

        await eventually(applied, what="the events applied")
        for _ in range(3):
            await client.get("/v1/calendars/some-name", headers=ids.as_ops)  # 404 each time
        anonymous = await client.get("/metrics/service")
        as_agent = await client.get("/metrics/service", headers=ids.as_agent(ids.agent_ids[0]))
        scrape = await client.get("/metrics/service", headers=ids.as_ops)
    assert anonymous.status_code == 401 and as_agent.status_code == 403
    families = {m.name: m for m in text_string_to_metric_families(scrape.text)}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["switchboard_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("/v1/calendars/{name}", "404")] == 3  # the template, not the raw path
    assert requests[("/metrics/service", "401")] == 1
    latency = families["switchboard_http_request_duration_seconds"]
    assert any(s.name.endswith("_count") for s in latency.samples)
    (applied_sample,) = families["switchboard_records_applied"].samples
    assert applied_sample.labels == {"service": "metrics"} and applied_sample.value == sent
