"""The whole desk under load: three service processes, simulated agents, a realistic mix of
messages over HTTP; then latency from the event stream and the routing invariants from the
database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.http1 import Client, HTTPError
from bench.loadgen import LoadResult, run_load
from bench.stats import pct
from devtools.run import launch, stop_all, wait_ready
from devtools.stack import ROOT, free_port
from devtools.topics import read_topic
from shared.auth import agent_scope, hash_key, new_key
from shared.db import make_engine
from shared.settings import Topics

CHANNELS = ["chat"] * 5 + ["telegram"] * 3 + ["whatsapp"] * 2 + ["email", "form", "x", "messenger"]
TEXTS = {
    "en": [
        "my account was hacked",
        "withdrawal pending for hours",
        "I got liquidated unfairly",
        "how do I create an api key",
        "KYC verification failed",
        "hello, a question",
        "a suggestion for the app",
    ],
    "zh": ["我的账户被盗了", "提现一直未到账", "合约爆仓了", "请问怎么实名认证", "你好，有个问题"],
    "ja": ["アカウントが乗っ取られました", "出金が反映されない", "本人確認について", "こんにちは"],
    "ko": ["계정이 해킹당했어요", "출금이 지연되고 있어요", "안녕하세요 문의드립니다"],
}
ALL_SKILLS = {"security": 3, "funds": 3, "trading": 3, "api": 3, "account": 3, "general": 3}
CAPACITY = {
    "chat": 6,
    "telegram": 6,
    "whatsapp": 6,
    "email": 10,
    "form": 10,
    "x": 6,
    "messenger": 6,
}


@dataclass
class Desk:
    """The running services, their keys and the database they share."""

    urls: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]
    keys: dict[str, str]
    agents: list[str]
    database_url: str
    topics: Topics
    bootstrap: str

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def to_json(self) -> str:
        """What another process needs to talk to the desk (not its processes)."""
        carried = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("processes", "topics")
        }
        return json.dumps(carried | {"namespace": self.topics.namespace})

    @classmethod
    def from_json(cls, text: str) -> Desk:
        carried = json.loads(text)
        topics = Topics(namespace=carried.pop("namespace"))
        return cls(**carried, processes={}, topics=topics)

    def pause(self, names: list[str]) -> None:
        """Freeze services (SIGSTOP) so another stage can be measured alone."""
        for name in names:
            self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, names: list[str]) -> None:
        for name in names:
            self.processes[name].send_signal(signal.SIGCONT)

    def peak_rss_mb(self) -> dict[str, float | None]:
        """Peak resident memory of each service (VmHWM), in MiB."""
        return {name: memory_mb(process.pid) for name, process in self.processes.items()}


def memory_mb(pid: int, field: str = "VmHWM") -> float | None:
    """A process's memory figure from /proc (VmHWM: peak resident; VmRSS: resident now), in
    MiB; None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field))
    return round(kb / 1024, 1)


def service_env(
    name: str,
    port: int,
    bootstrap: str,
    database_url: str,
    api_keys: list[dict[str, Any]],
    namespace: str,
) -> dict[str, str]:
    """The environment of a bench service process: its own port, topics and consumer group."""
    return {
        **os.environ,
        "SWITCHBOARD_KAFKA_BOOTSTRAP": bootstrap,
        "SWITCHBOARD_DATABASE_URL": database_url,
        "SWITCHBOARD_API_KEYS": json.dumps(api_keys),
        "SWITCHBOARD_TOPICS__NAMESPACE": namespace,
        "SWITCHBOARD_CONSUMER_GROUP": f"{name}-{namespace}",
        "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
    }


def start_desk(bootstrap: str, database_url: str, agents: int, log_dir: Path) -> Desk:
    topics = Topics(namespace=f"bench{uuid.uuid4().hex[:8]}")
    agent_ids = [f"bench-agent-{i:03d}" for i in range(agents)]
    keys = {"ingest": new_key(), "ops": new_key()} | {a: new_key() for a in agent_ids}
    scopes = {"ingest": ["ingest"], "ops": ["ops"]} | {a: [agent_scope(a)] for a in agent_ids}
    entries = [{"name": n, "sha256": hash_key(k), "scopes": scopes[n]} for n, k in keys.items()]
    ports = {name: free_port() for name in ("ingest", "router", "metrics")}
    intake_port = free_port()
    processes = {}
    for name, port in ports.items():
        env = service_env(name, port, bootstrap, database_url, entries, topics.namespace)
        if name == "router":  # as deployed: the relay and the intake processes of their own
            env["SWITCHBOARD_OUTBOX_RELAY"] = "separate"
            processes["relay"] = launch("router.relay", env, log_dir / "relay.log")
            intake = {"SWITCHBOARD_ROLE": "intake", "SWITCHBOARD_PORT": str(intake_port)}
            processes["intake"] = launch("router", env | intake, log_dir / "intake.log")
            env["SWITCHBOARD_ROLE"] = "api"
        processes[name] = launch(name, env, log_dir / f"{name}.log")
    try:
        for name, port in (ports | {"intake": intake_port}).items():
            wait_ready(name, port, processes[name], timeout=60)
    except Exception:
        stop_all(processes)
        raise
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return Desk(urls, processes, keys, agent_ids, database_url, topics, bootstrap)


class MessageMix:
    """Channels, languages, priorities, 5% VIP and 25% follow-ups to recent conversations."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.recent: list[tuple[str, str]] = []

    def __call__(self, i: int) -> dict[str, Any]:
        rng = self.rng
        if self.recent and rng.random() < 0.25:
            channel, ref = rng.choice(self.recent[-200:])
        else:
            channel, ref = rng.choice(CHANNELS), uuid.uuid4().hex[:12]
            self.recent.append((channel, ref))
        language = rng.choice(["en", "en", "zh", "ja", "ko"])
        return {
            "channel": channel,
            "channel_message_id": uuid.uuid4().hex,
            "conversation_ref": ref,
            "customer": {
                "id": f"c-{ref}",
                "tier": "vip" if rng.random() < 0.05 else "standard",
                "language": language,
            },
            "text": rng.choice(TEXTS[language]),
        }


@dataclass
class AgentStats:
    replies: int = 0
    resolved: int = 0
    errors: int = 0


async def simulated_agents(
    desk: Desk, stop: asyncio.Event, think_s: float, ready: asyncio.Event | None = None
) -> AgentStats:
    """Every agent: online, long-poll, reply after a think time, resolve (``ready`` is set
    once every agent is online)."""
    stats = AgentStats()
    # A client per agent, as each agent's frontend is its own.
    clients = {a: Client(max_connections=4, timeout=30) for a in desk.agents}
    async with contextlib.AsyncExitStack() as stack:
        for client in clients.values():
            await stack.enter_async_context(client)
        for agent, http in clients.items():
            answer = await http.put(
                f"{desk.urls['router']}/v1/agents/{agent}",
                headers=desk.headers("ops"),
                json={
                    "name": agent,
                    "skills": ALL_SKILLS,
                    "languages": ["en", "zh", "ja", "ko"],
                    "capacity": CAPACITY,
                },
            )
            answer.raise_for_status()
            await http.put(
                f"{desk.urls['router']}/v1/agents/{agent}/status",
                headers=desk.headers(agent),
                json={"status": "online"},
            )

        async def work(agent: str, conv: dict[str, Any]) -> None:
            await asyncio.sleep(think_s)
            base = f"{desk.urls['router']}/v1/conversations/{conv['id']}"
            for action, body in (("replies", {"text": "On it."}), ("resolve", {})):
                answer = await clients[agent].post(
                    f"{base}/{action}",
                    headers=desk.headers(agent),
                    json={"agent_id": agent, **body},
                )
                if answer.status_code >= 400:
                    stats.errors += 1
                    return
                if action == "replies":
                    stats.replies += 1
                else:
                    stats.resolved += 1

        async def agent_loop(agent: str) -> None:
            cursor: int | None = None
            busy: dict[str, asyncio.Task[None]] = {}
            while not stop.is_set():
                # A long wait: an idle agent costs the router one request per 10 s, not per 1 s.
                params: dict[str, Any] = {"wait": 10} | ({"since": cursor} if cursor else {})
                try:
                    answer = await clients[agent].get(
                        f"{desk.urls['router']}/v1/agents/{agent}/assignments",
                        params=params,
                        headers=desk.headers(agent),
                    )
                except HTTPError:
                    stats.errors += 1
                    continue
                body = answer.json()
                cursor = body["cursor"]
                for conv in body["conversations"]:
                    key = f"{conv['id']}:{conv['reopened']}"
                    if key not in busy or busy[key].done():
                        if key in busy:
                            continue
                        busy[key] = asyncio.create_task(work(agent, conv))
                        in_hand.add(busy[key])
                        busy[key].add_done_callback(in_hand.discard)

        in_hand: set[asyncio.Task[None]] = set()  # replies and resolutions under way
        loops = [asyncio.create_task(agent_loop(a)) for a in desk.agents]
        if ready is not None:
            ready.set()
        await stop.wait()
        await asyncio.sleep(1.0)  # let work in hand finish
        for task in [*loops, *in_hand]:
            task.cancel()
        await asyncio.gather(*loops, *in_hand, return_exceptions=True)
    return stats


async def drain(
    desk: Desk, accepted_ids: set[str], timeout_s: float = 120, stored_before: int = 0
) -> bool:
    """Wait until every accepted message is applied (beside the ``stored_before`` inbound
    messages history left) and the outbox is empty."""
    engine = make_engine(desk.database_url, pool_size=1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline:
            async with engine.connect() as conn:
                applied = (
                    await conn.execute(
                        text("SELECT count(*) FROM router.messages WHERE direction = 'inbound'")
                    )
                ).scalar()
                pending = (await conn.execute(text("SELECT count(*) FROM router.outbox"))).scalar()
            if applied == stored_before + len(accepted_ids) and pending == 0:
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await engine.dispose()


async def assignment_latencies(desk: Desk, since: datetime | None = None) -> list[float]:
    """Ingest receive time of each conversation's first message → its first assignment."""
    opened: dict[str, datetime] = {}
    assigned: dict[str, datetime] = {}
    for record in await read_topic(desk.bootstrap, desk.topics.conversation_events):
        event = json.loads(record.value)
        at = datetime.fromisoformat(event["occurred_at"])
        cid = event["conversation_id"]
        if event["type"] == "conversation.opened":
            opened[cid] = at
        elif event["type"] == "conversation.assigned" and cid not in assigned:
            assigned[cid] = at
    return [
        (assigned[c] - t).total_seconds()
        for c, t in opened.items()
        if c in assigned and (since is None or t >= since)
    ]


async def invariants(
    desk: Desk, accepted_ids: set[str], before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Routing invariants, checked from the database: each count less what ``before`` (the
    same checks, run before the load) found, so seeded history is not counted."""
    engine = make_engine(desk.database_url, pool_size=1)
    checks = {
        "agents_over_capacity": """SELECT count(*) FROM router.agent_slots
                                   WHERE load > capacity AND capacity > 0""",
        "load_counter_mismatches": """SELECT count(*) FROM (SELECT s.agent_id FROM
            router.agent_slots s LEFT JOIN router.conversations c ON c.agent_id = s.agent_id
            AND c.channel = s.channel AND c.state = 'assigned'
            GROUP BY s.agent_id, s.channel, s.load HAVING s.load <> count(c.id)) m""",
        "inbound_messages_stored": """SELECT count(*) FROM router.messages
                                      WHERE direction = 'inbound'""",
    }
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        for name, sql in checks.items():
            out[name] = (await conn.execute(text(sql))).scalar() - (before or {}).get(name, 0)
    await engine.dispose()
    out["messages_accepted"] = len(accepted_ids)
    out["nothing_lost_or_doubled"] = out["inbound_messages_stored"] == len(accepted_ids)
    return out


def summarize_load(load: LoadResult) -> dict[str, Any]:
    return {
        "offered_rate": load.offered_rate,
        "achieved_rate": round(load.achieved_rate, 1),
        "http_p50_ms": pct(load.latencies_s, 50),
        "http_p99_ms": pct(load.latencies_s, 99),
        "errors": load.failed,
        "statuses": {str(k): v for k, v in load.statuses.items()},
    }


async def post_messages(desk: Desk, rate: float, duration_s: float, mix: MessageMix) -> LoadResult:
    return await run_load(
        f"{desk.urls['ingest']}/v1/messages",
        rate=rate,
        duration_s=duration_s,
        body=mix,
        headers=desk.headers("ingest"),
        keep_bodies=True,
    )


def trivial_server(port: int, log_dir: Path) -> subprocess.Popen[bytes]:
    log = open(log_dir / "trivial.log", "ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.trivial_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
