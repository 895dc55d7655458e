"""``make run``: broker, database, migrations and the three services, with dev API keys.

Ctrl-C (or SIGTERM) stops everything, losing nothing in flight: ingest stops accepting first
(it answers the requests it holds), the router and metrics consume what is left on the topics,
and only then do they and the broker stop. A second Ctrl-C stops at once. ``--demo`` also
seeds agents and posts messages so a newcomer sees assignments and metrics move.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from devtools.stack import ROOT, Broker, Postgres, create_database, migrate, port_free
from devtools.topics import lag
from services.metrics.settings import MetricsSettings
from services.router.settings import RouterSettings
from shared.auth import agent_scope, hash_key, new_key
from shared.settings import Topics

RUN_DIR = ROOT / ".run"
SERVICES = {"ingest": 8001, "router": 8002, "metrics": 8003}
DEMO_AGENTS = ["alice", "bao", "chloe"]
# How long a stop waits for the router and metrics to consume what is on the topics.
DRAIN_TIMEOUT_S = 60.0


def say(message: str) -> None:
    print(f"[switchboard] {message}", flush=True)


def dev_keys() -> dict[str, dict[str, object]]:
    """Fresh keys for integrators, ops and the demo agents; their digests go to the services."""
    keys: dict[str, dict[str, object]] = {
        "ingest": {"key": new_key(), "scopes": ["ingest"]},
        "ops": {"key": new_key(), "scopes": ["ops"]},
    }
    for agent in DEMO_AGENTS:
        keys[f"agent-{agent}"] = {"key": new_key(), "scopes": [agent_scope(agent)]}
    return keys


def service_env(
    bootstrap: str, database_url: str, keys: dict[str, dict[str, object]]
) -> dict[str, str]:
    entries = [
        {"name": name, "sha256": hash_key(str(k["key"])), "scopes": k["scopes"]}
        for name, k in keys.items()
    ]
    return {
        **os.environ,
        "SWITCHBOARD_KAFKA_BOOTSTRAP": bootstrap,
        "SWITCHBOARD_DATABASE_URL": database_url,
        "SWITCHBOARD_API_KEYS": json.dumps(entries),
    }


def launch(name: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start one service as its own process, logging to ``log_path``."""
    log_file = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        # Its own session: Ctrl-C in the terminal reaches only ``make run``, which stops the
        # services in order.
        start_new_session=True,
    )


def wait_ready(name: str, port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; see .run/{name}.log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} was not ready on port {port} within {timeout}s")


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every service (graceful shutdown), SIGKILL what is still up after 10 s."""
    for process in processes.values():
        process.terminate()
    for process in processes.values():
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def drained_groups(topics: Topics) -> dict[str, dict[str, list[str]]]:
    """Per service that must drain before the broker stops: its consumer groups (as ``make
    run`` names them) and their topics."""
    router = str(RouterSettings.model_fields["consumer_group"].default)
    metrics = str(MetricsSettings.model_fields["consumer_group"].default)
    return {
        "router": {router: [topics.inbound], f"{router}-deliveries": [topics.delivery_events]},
        "metrics": {metrics: [topics.conversation_events, topics.agent_events]},
    }


def stop_desk(
    processes: dict[str, subprocess.Popen[bytes]],
    bootstrap: str,
    groups: dict[str, dict[str, list[str]]],
    *,
    timeout: float = DRAIN_TIMEOUT_S,
    interrupted: Callable[[], bool] = lambda: False,
) -> dict[str, int]:
    """Stop ingest (it answers what it holds and publishes it), wait until the running
    services' consumer groups have committed every record on their topics (progress printed,
    at most ``timeout`` seconds, or until ``interrupted``), then stop the other services.
    What was left unconsumed, per group."""
    if "ingest" in processes:
        say("stopping ingest: no new messages; the requests it holds are answered")
        stop_all({"ingest": processes.pop("ingest")})
    watched = {
        group: topics
        for name, service_groups in groups.items()
        if name in processes and processes[name].poll() is None
        for group, topics in service_groups.items()
    }
    behind: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    settled = 0
    while watched and not interrupted():
        try:
            behind = asyncio.run(asyncio.wait_for(lag(bootstrap, watched), 10))
        except Exception as exc:  # a broker that is gone cannot be drained
            say(f"cannot read the consumer groups' progress ({exc!r}); stopping anyway")
            break
        # Zero twice in a row: the router's outbox may still be publishing what it consumed.
        settled = settled + 1 if not any(behind.values()) else 0
        if settled == 2:
            say("drained: the router and metrics consumed everything on the topics")
            break
        if time.monotonic() > deadline:
            say(f"gave up draining after {timeout:.0f}s; unconsumed records are lost: {behind}")
            break
        if any(behind.values()):
            say("draining: " + ", ".join(f"{g} {n} behind" for g, n in behind.items()))
        time.sleep(1.0)
    stop_all(processes)
    processes.clear()
    return behind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", action="store_true", help="seed agents and post messages")
    args = parser.parse_args()
    RUN_DIR.mkdir(exist_ok=True)

    broker_port = 9092 if port_free(9092) else None
    broker = Broker(broker_port, log_path=RUN_DIR / "broker.log").start()
    say(f"Kafka broker (Tansu) on {broker.bootstrap}")
    pg = Postgres(data_dir=RUN_DIR / "pgdata")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        database_url = (
            pg.url if os.environ.get("SWITCHBOARD_DATABASE_URL") else pg.url_for("switchboard")
        )
        if pg.embedded:
            asyncio.run(create_database(pg.url, "switchboard"))
        say(f"PostgreSQL: {'embedded, data in .run/pgdata' if pg.embedded else database_url}")
        migrate(database_url)
        say("migrations applied")
        keys = dev_keys()
        env = service_env(broker.bootstrap, database_url, keys)
        for name, port in SERVICES.items():
            if not port_free(port):
                raise RuntimeError(f"port {port} for {name} is taken; stop what uses it first")
            processes[name] = launch(name, env, RUN_DIR / f"{name}.log")
        for name, port in SERVICES.items():
            wait_ready(name, port, processes[name])
            say(f"{name:8s} http://127.0.0.1:{port}  (docs: /docs, log: .run/{name}.log)")
        (RUN_DIR / "dev-keys.json").write_text(json.dumps(keys, indent=2))
        say("dev API keys (also in .run/dev-keys.json):")
        for name, k in keys.items():
            say(f"  {name:14s} {k['key']}")
        if args.demo:
            from devtools.demo import run_demo

            asyncio.run(run_demo({n: str(k["key"]) for n, k in keys.items()}))
        say("running; Ctrl-C stops everything (after the topics are drained)")
        stop = {"now": False, "signals": 0}

        def on_signal(*_: object) -> None:
            stop["now"] = True
            stop["signals"] = int(stop["signals"]) + 1

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop["now"]:
            for name, process in processes.items():
                if process.poll() is not None:
                    say(f"{name} exited with code {process.returncode}; see .run/{name}.log")
                    stop["now"] = True
            time.sleep(0.5)
        say("stopping; Ctrl-C again stops at once, losing what is still on the topics")
        stop_desk(
            processes,
            broker.bootstrap,
            drained_groups(Topics()),
            interrupted=lambda: int(stop["signals"]) > 1,
        )
        return 0
    finally:
        stop_all(processes)
        broker.stop()
        pg.stop()
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
