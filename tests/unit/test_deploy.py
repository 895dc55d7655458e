"""deploy/: the Prometheus scrape config and the Grafana dashboard fit what the services export."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics.exposition import BUCKETS_S, HistogramRow, families, render
from shared.telemetry import RequestMetrics, _ConsumerProgress

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def exported_names():
    """Every sample name the services expose (desk figures and each process's own)."""
    row = HistogramRow(("chat", "urgent"), [1] * len(BUCKETS_S), count=1, total=1.0)
    desk = render(
        families(
            {"first_response_s": [row], "resolution_s": [row]},
            {"chat": {"opened": 1, "resolved": 1, "messages": 1}},
            {("chat", "urgent"): 1},
            [{"channel": "chat", "priority": "urgent", "depth": 1, "oldest_wait_s": 1.0}],
            [{"status": "online", "capacity": {"chat": 3}, "load": {"chat": 1}}],
        )
    ).decode()

    class State:
        consume_loop = type("Loop", (), {"applied": 1, "dead_lettered": 0})()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ConsumerProgress(type("App", (), {"state": State()})(), "router"))
    requests = RequestMetrics(None, registry, "router")
    requests.requests.labels("router", "GET", "/x", "200").inc()
    requests.latency.labels("router", "GET", "/x").observe(0.1)
    names = set()
    for text in (desk, generate_latest(registry).decode()):
        for family in text_string_to_metric_families(text):
            names |= {s.name for s in family.samples}
    return names


def test_every_dashboard_query_names_a_metric_the_services_export():
    dashboard = json.loads((DEPLOY / "grafana/dashboards/switchboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    known = exported_names()
    for expr in exprs:
        used = set(re.findall(r"\bswitchboard_[a-z_]+", expr))
        assert used, expr
        assert used <= known, f"{expr}: {used - known} not exported"
    assert all(p["datasource"]["uid"] == "switchboard-prometheus" for p in dashboard["panels"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_scrape_config_covers_the_three_services_with_an_ops_key():
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert {jobs[f"switchboard-{s}"]["metrics_path"] for s in ("ingest", "router", "metrics")} == {
        "/metrics/service"
    }
    assert jobs["switchboard-desk"]["metrics_path"] == "/metrics"
    ports = {
        t.split(":")[1] for j in jobs.values() for c in j["static_configs"] for t in c["targets"]
    }
    assert ports == {"8001", "8002", "8003"}
    assert all(j["authorization"]["type"] == "Bearer" for j in jobs.values())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["uid"] == "switchboard-prometheus"
