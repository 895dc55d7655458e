"""Ingest's HTTP edge saturated by wrk (a C load generator: a Python one saturates before the
server does), next to a bare FastAPI endpoint that parses JSON and publishes it to the same
broker, in the same run; and the batch endpoint's items per second.

Each endpoint gets ``duration_s`` of ``wrk -t2 -c<connections>`` after a short warm-up, with
``bench/ingest_post.lua`` giving every message a channel message id of its own. Ingest runs as
its own process (``python -m services.ingest``, the dispatcher off; router and metrics do not
run), publishing to the real broker; the per-key rate limit is raised out of the way (it
would cap the run at 1,000 requests a second), the per-customer one stays (the script spreads
messages over 100,000 customers). ``cpu_us_per_msg`` is the server's CPU per message, which
other work on a shared machine changes less than the rate. ``python -m bench.ingest_http``
runs it on a broker of its own and prints the figures as JSON on the last line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.pipeline import service_env
from bench.stats import CpuShare
from devtools.run import launch, stop_all, wait_ready
from devtools.stack import ROOT, Broker, Postgres, free_port
from shared.auth import INGEST, hash_key, new_key
from shared.kafka import ensure_topics
from shared.settings import CommonSettings, Topics

SCRIPT = Path(__file__).with_name("ingest_post.lua")
BATCH = 100
WARM_UP_S = 2


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


async def wrk(
    url: str, *, duration_s: float, connections: int, key: str, per_request: int = 1
) -> dict[str, Any]:
    """One wrk run against ``url``; its figures (requests, errors, latency percentiles in µs)
    and the wrk process's CPU share."""
    args = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        uuid.uuid4().hex[:12],
        key,
        str(per_request),
    ]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {text[-2000:]}")
    figures: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    return figures


def summarize(run: dict[str, Any], cpu: dict[str, float], per_request: int = 1) -> dict[str, Any]:
    """Messages per second counted from answered requests (wrk counts a non-2xx answer as an
    error, so failed requests are subtracted), latency in ms."""
    seconds = run["duration_us"] / 1e6
    failed = sum(
        run[k]
        for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")
    )
    ok = max(run["requests"] - run["status_errors"], 0)
    return {
        "msg_s": round(ok * per_request / seconds, 1),
        "requests_s": round(run["requests"] / seconds, 1),
        "messages_per_request": per_request,
        "failed_requests": failed,
        "p50_ms": round(run["p50_us"] / 1000, 2),
        "p90_ms": round(run["p90_us"] / 1000, 2),
        "p99_ms": round(run["p99_us"] / 1000, 2),
        "max_ms": round(run["max_us"] / 1000, 2),
        "cpu_share": cpu,
    }


async def measure(
    url: str,
    pids: dict[str, int],
    *,
    duration_s: float,
    connections: int,
    key: str,
    per_request: int = 1,
) -> dict[str, Any]:
    """A warm-up, then a measured wrk run with the CPU share of ``pids`` (and of wrk) over it,
    and the server's CPU per message (which other work on the machine changes less than the
    rate)."""
    await wrk(url, duration_s=WARM_UP_S, connections=connections, key=key, per_request=per_request)
    cpu = CpuShare(pids)
    cpu.start()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = await wrk(
        url, duration_s=duration_s, connections=connections, key=key, per_request=per_request
    )
    share = cpu.stop()
    share.pop("postgres", None)  # nothing here uses the database
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_s = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    share["wrk"] = round(wrk_s / (run["duration_us"] / 1e6), 2)
    figures = summarize(run, share, per_request)
    server = next(iter(pids))
    if figures["msg_s"]:
        figures["cpu_us_per_msg"] = round(share[server] / figures["msg_s"] * 1e6)
    return figures


async def records_on(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        await consumer.stop()


def bare_server(port: int, bootstrap: str, topic: str, log_dir: Path) -> subprocess.Popen[bytes]:
    """The bare publishing endpoint under plain uvicorn (httptools and uvloop when
    installed, as ingest)."""
    log = open(log_dir / "bare-publish.log", "ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_publish_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": topic},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError(f"bare endpoint exited with code {process.returncode}")
            try:
                await client.get(f"http://127.0.0.1:{port}/docs")
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError("bare endpoint did not start")


async def run(
    broker: Broker,
    pg: Postgres | None,
    log_dir: Path,
    *,
    duration_s: float = 10.0,
    connections: int = 64,
) -> dict[str, Any]:
    """The ``ingest-http`` part's figures (``pg`` is not used: ingest has no database)."""
    assert broker.process is not None
    topics = Topics(namespace=f"bench{uuid.uuid4().hex[:8]}")
    await ensure_topics(CommonSettings(kafka_bootstrap=broker.bootstrap, topics=topics))
    key = new_key()
    entries = [{"name": "bench", "sha256": hash_key(key), "scopes": [INGEST]}]
    port = free_port()
    env = service_env("ingest", port, broker.bootstrap, "", entries, topics.namespace)
    env |= {
        "SWITCHBOARD_DISPATCHER_ENABLED": "false",
        "SWITCHBOARD_RATE_LIMIT_PER_KEY_PER_S": "1000000",
        "SWITCHBOARD_RATE_LIMIT_PER_KEY_BURST": "1000000",
    }
    env.pop("SWITCHBOARD_DATABASE_URL")
    figures: dict[str, Any] = {"duration_s": duration_s, "connections": connections}
    ingest = launch("ingest", env, log_dir / "ingest-http.log")
    try:
        wait_ready("ingest", port, ingest, timeout=60)
        pids = {"ingest": ingest.pid, "broker": broker.process.pid}
        base = f"http://127.0.0.1:{port}/v1/messages"
        say(f"ingest-http: single messages, {duration_s:g} s, {connections} connections")
        before = await records_on(broker.bootstrap, topics.inbound)
        figures["single"] = await measure(
            base, pids, duration_s=duration_s, connections=connections, key=key
        )
        # Fewer connections for batches: 64 batches of 100 in flight would wait past wrk's
        # timeout, and the work on a request wrk gave up on is not counted.
        batch_connections = max(2, connections // 8)
        say(f"ingest-http: batches of {BATCH}, {batch_connections} connections")
        figures["batch"] = await measure(
            base,
            pids,
            duration_s=duration_s,
            connections=batch_connections,
            key=key,
            per_request=BATCH,
        )
        figures["published_by_ingest"] = await records_on(broker.bootstrap, topics.inbound) - before
    finally:
        stop_all({"ingest": ingest})

    bare_topic = f"{topics.namespace}.bare"
    await ensure_topics(
        CommonSettings(kafka_bootstrap=broker.bootstrap, topics=topics), [bare_topic]
    )
    bare_port = free_port()
    bare = bare_server(bare_port, broker.bootstrap, bare_topic, log_dir)
    try:
        await _wait_listening(bare_port, bare)
        say("ingest-http: the bare publishing endpoint")
        figures["bare"] = await measure(
            f"http://127.0.0.1:{bare_port}/v1/messages",
            {"bare": bare.pid, "broker": broker.process.pid},
            duration_s=duration_s,
            connections=connections,
            key=key,
        )
        figures["published_by_bare"] = await records_on(broker.bootstrap, bare_topic)
    finally:
        stop_all({"bare": bare})

    single, bare_figures = figures["single"], figures["bare"]
    msg_s, bare_msg_s = single["msg_s"], bare_figures["msg_s"]
    return {
        "msg_s": msg_s,
        "bare_msg_s": bare_msg_s,
        "ratio": round(msg_s / bare_msg_s, 2) if bare_msg_s else None,
        "p50_ms": single["p50_ms"],
        "p99_ms": single["p99_ms"],
        "bare_p50_ms": bare_figures["p50_ms"],
        "bare_p99_ms": bare_figures["p99_ms"],
        "batch_msg_s": figures["batch"]["msg_s"],
        "cpu_us_per_msg": single.get("cpu_us_per_msg"),
        "bare_cpu_us_per_msg": bare_figures.get("cpu_us_per_msg"),
        "batch_cpu_us_per_msg": figures["batch"].get("cpu_us_per_msg"),
        "cpu_share": single["cpu_share"],
        "bare_cpu_share": bare_figures["cpu_share"],
        **figures,
    }


async def main(duration_s: float, connections: int) -> dict[str, Any]:
    """The part on a broker of its own."""
    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    try:
        return await run(broker, None, log_dir, duration_s=duration_s, connections=connections)
    finally:
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.duration, args.connections))))
