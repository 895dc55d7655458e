"""deploy/: the Prometheus scrape config and the Grafana dashboard fit what the services export;
Kubernetes manifests, the Compose file and the topics file are valid and say what they must;
ingest is reached only through the nginx proxy, whose config nginx accepts."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cli.topics_file import TopicsFileError, parse_topics
from services.ingest.settings import IngestSettings
from services.metrics.exposition import BUCKETS_S, HistogramRow, families, render
from shared.settings import CommonSettings, Topics
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
    requests = RequestMetrics(registry, "router")
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
    services = ("ingest", "router", "router-intake", "metrics")
    assert {jobs[f"switchboard-{s}"]["metrics_path"] for s in services} == {"/metrics/service"}
    assert jobs["switchboard-desk"]["metrics_path"] == "/metrics"
    ports = {
        t.split(":")[1] for j in jobs.values() for c in j["static_configs"] for t in c["targets"]
    }
    assert ports == {"8001", "8002", "8003", "8004"}
    assert all(j["authorization"]["type"] == "Bearer" for j in jobs.values())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["uid"] == "switchboard-prometheus"


# ---------------------------------------------------------------- Kubernetes and Compose

K8S_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())


def manifests():
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                yield path.name, doc


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_are_valid_against_the_api_schemas(version):
    docs = list(manifests())
    assert len(docs) >= 14
    for _, doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises, naming the field
    listed = yaml.safe_load((DEPLOY / "k8s/kustomization.yaml").read_text())["resources"]
    assert {n for n, _ in docs} - {"secret.example.yaml"} == set(listed)


def test_the_validator_refuses_a_misspelled_field():
    deployment = next(d for _, d in manifests() if d["kind"] == "Deployment")
    deployment["spec"]["replicass"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_every_service_probes_readyz_and_healthz_and_several_routers_run():
    docs = [d for _, d in manifests()]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {f"switchboard-{s}" for s in ("ingest", "router", "metrics")}
    assert set(deployments) == services | {
        "switchboard-ingest-proxy",
        "switchboard-router-relay",
        "switchboard-router-intake",
    }
    for d in (deployments[name] for name in services):
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"switchboard"}  # the ConfigMap and the Secret
    assert deployments["switchboard-router"]["spec"]["replicas"] > 1
    # The routers leave their events to the relay deployment, which runs standby replicas.
    (router,) = deployments["switchboard-router"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "SWITCHBOARD_OUTBOX_RELAY", "value": "separate"} in router["env"]
    # The routers serve the agent API; the intake deployment applies the inbound messages.
    assert {"name": "SWITCHBOARD_ROLE", "value": "api"} in router["env"]
    (intake,) = deployments["switchboard-router-intake"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "SWITCHBOARD_ROLE", "value": "intake"} in intake["env"]
    assert intake["readinessProbe"]["httpGet"]["path"] == "/readyz"
    relay = deployments["switchboard-router-relay"]
    (container,) = relay["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "services.router.relay"]
    assert relay["spec"]["replicas"] > 1
    pdbs = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert pdbs == set(deployments)
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "switchboard-ingest"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_the_compose_file_is_valid_and_runs_one_image_for_the_three_services(tmp_path):
    compose = DEPLOY / "docker-compose.yml"
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make system-deps` installs Debian's"
    (tmp_path / "ops-key").write_text("sb_example")
    env = {
        "PATH": "/usr/bin:/bin",
        "POSTGRES_PASSWORD": "example",
        "GRAFANA_ADMIN_PASSWORD": "example",
        "SWITCHBOARD_API_KEYS": "[]",
    }
    text = compose.read_text().replace("file: ./ops-key", f"file: {tmp_path / 'ops-key'}")
    (tmp_path / "compose.yml").write_text(text)
    for folder in ("prometheus", "grafana", "nginx"):
        (tmp_path / folder).symlink_to(DEPLOY / folder)
    checked = subprocess.run(
        [binary, "-f", str(tmp_path / "compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    images = {services[s]["image"] for s in ("ingest", "router", "metrics", "migrate", "topics")}
    assert images == {"switchboard:local"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    for s in ("ingest", "router", "metrics"):
        assert services[s]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert "-c constraints.txt" in dockerfile and "USER 10001" in dockerfile

    # Ingest publishes no port: its address (8001) is the proxy's, which mounts the config.
    assert "ports" not in services["ingest"]
    proxy = services["ingest-proxy"]
    assert proxy["image"].startswith("nginx:")
    (published,) = proxy["ports"]
    assert (str(published["published"]), published["target"]) == ("8001", 8080)
    (mount,) = proxy["volumes"]  # docker-compose 1.x renders "source:target:mode"
    if isinstance(mount, str):
        source, target, _ = mount.split(":")
    else:
        source, target = mount["source"], mount["target"]
    assert source.endswith("nginx/ingest-proxy.conf") and target == "/etc/nginx/nginx.conf"
    assert UPSTREAM.split(":")[0] in services["ingest"]["networks"]["default"]["aliases"]
    assert proxy["depends_on"]["ingest"]["condition"] == "service_healthy"
    published_ports = {p["published"] for s in services.values() for p in s.get("ports", [])}
    assert {str(p) for p in published_ports} >= {"8001", "8002", "8003"}
    for s in ("ingest", "router", "metrics"):
        assert services[s]["environment"]["SWITCHBOARD_DOCS_PUBLIC"] == "false"
    assert services["router"]["environment"]["SWITCHBOARD_OUTBOX_RELAY"] == "separate"
    assert services["router-relay"]["command"] == ["python", "-m", "services.router.relay"]
    assert services["router"]["environment"]["SWITCHBOARD_ROLE"] == "api"
    assert services["router-intake"]["environment"]["SWITCHBOARD_ROLE"] == "intake"


# ---------------------------------------------------------------- the proxy in front of ingest

PROXY_CONF = DEPLOY / "nginx/ingest-proxy.conf"
UPSTREAM = "switchboard-ingest:8001"


def directives(text):
    """Each simple nginx directive's arguments, by name (comments dropped)."""
    found = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].strip().rstrip(";").split()
        if words and not line.strip().endswith("{"):
            found.setdefault(words[0], []).append(words[1:])
    return found


def size_in_bytes(value):
    units = {"k": 1024, "m": 1024**2}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)


def test_the_proxy_limits_each_client_and_matches_ingests_own_limits():
    found = directives(PROXY_CONF.read_text())
    settings = CommonSettings()
    # Every path's limit is ingest's, but the batch endpoint's (its own location).
    body, batch_body = found["client_max_body_size"]
    assert size_in_bytes(body[0]) == settings.max_body_bytes
    assert size_in_bytes(batch_body[0]) == IngestSettings().batch_max_body_bytes
    assert found["server"] == [[UPSTREAM]]
    assert found["proxy_pass"] and all(p == ["http://ingest"] for p in found["proxy_pass"])
    assert [z[0] for z in found["limit_conn_zone"]] == ["$binary_remote_addr"]
    assert [z[0] for z in found["limit_req_zone"]] == ["$binary_remote_addr"]
    assert found["limit_conn"] and found["limit_req"]
    for timeout in ("client_header_timeout", "client_body_timeout", "keepalive_timeout"):
        assert timeout in found
    # The proxy lets an upstream connection go before ingest's keep-alive timeout does.
    upstream_keepalive = min(int(v[0].rstrip("s")) for v in found["keepalive_timeout"])
    assert upstream_keepalive < settings.keepalive_timeout_s


def test_nginx_accepts_the_proxy_config(tmp_path):
    binary = shutil.which("nginx", path="/usr/sbin:/usr/bin:/sbin:/bin")  # not on every PATH
    assert binary, "nginx is missing: `make system-deps` installs Debian's"
    # nginx -t resolves upstream names; the cluster's is not resolvable here.
    config = tmp_path / "nginx.conf"
    config.write_text(PROXY_CONF.read_text().replace(UPSTREAM, "127.0.0.1:8001"))
    checked = subprocess.run(
        [binary, "-t", "-q", "-c", str(config), "-e", "stderr", "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr


def test_in_kubernetes_ingest_is_reached_only_through_the_proxy():
    docs = [d for _, d in manifests()]

    def named(kind, name):
        (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return found

    config = named("ConfigMap", "switchboard-ingest-proxy")
    assert config["data"]["nginx.conf"] == PROXY_CONF.read_text()
    public = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Service" and d["spec"].get("type") in ("LoadBalancer", "NodePort")
    ]
    assert public == ["switchboard-ingest-proxy"]
    assert named("Service", "switchboard-ingest")["spec"]["type"] == "ClusterIP"
    assert named("Service", "switchboard-ingest")["spec"]["ports"][0]["port"] == int(
        UPSTREAM.split(":")[1]
    )
    proxy = named("Deployment", "switchboard-ingest-proxy")["spec"]["template"]["spec"]
    (container,) = proxy["containers"]
    assert container["image"].startswith("nginx:")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/nginx/nginx.conf"]["subPath"] == "nginx.conf"
    volumes = {v["name"]: v for v in proxy["volumes"]}
    assert volumes[mounts["/etc/nginx/nginx.conf"]["name"]]["configMap"]["name"] == (
        "switchboard-ingest-proxy"
    )
    policy = named("NetworkPolicy", "switchboard-ingest")
    ingest_labels = named("Deployment", "switchboard-ingest")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == ingest_labels
    (rule,) = policy["spec"]["ingress"]
    pods = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
    proxy_labels = named("Deployment", "switchboard-ingest-proxy")["spec"]["selector"]
    assert pods == [proxy_labels["matchLabels"]]
    shared_config = named("ConfigMap", "switchboard")["data"]
    assert shared_config["SWITCHBOARD_DOCS_PUBLIC"] == "false"


def test_the_topics_file_gives_production_settings_and_a_development_override():
    text = (DEPLOY / "topics.yaml").read_text()
    topics = {t.name: t for t in parse_topics(text)}
    assert set(topics) == set(Topics().all())  # every topic the services use, no other
    inbound = topics["switchboard.inbound.v1"]
    assert inbound.replication_factor == 3 and inbound.configs["min.insync.replicas"] == "2"
    assert topics["switchboard.dead-letter.v1"].configs["retention.ms"] == "2592000000"
    assert {t.replication_factor for t in parse_topics(text, replication_factor=1)} == {1}
    with pytest.raises(TopicsFileError):
        parse_topics("topics: [{name: a, partitions: 0}]")
