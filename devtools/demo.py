"""``make demo``: seed three agents, post a handful of messages in several languages, let the
agents answer and resolve, and print what the desk and the metrics saw.

A desk started on an existing ``.run/pgdata`` still holds earlier conversations, some of them
open and assigned to the same agents. The demo touches and reports only its own: each run has
an id that is in every conversation ref and customer id it posts (``demo-<run>-<n>``), agents
answer only conversations carrying it, and the figures are those of conversations opened
while the demo ran."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

INGEST, ROUTER, METRICS = "http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"

AGENTS = {
    "alice": {"skills": {"security": 4, "funds": 3, "general": 2}, "languages": ["en", "zh"]},
    "bao": {"skills": {"funds": 4, "trading": 3, "general": 3}, "languages": ["zh", "en"]},
    "chloe": {"skills": {"security": 2, "account": 3, "general": 2}, "languages": ["ko", "ja"]},
}
MESSAGES = [
    ("telegram", "Someone hacked my account and withdrew my BTC!", "vip"),
    ("chat", "我的提现已经三个小时了还没到账", "standard"),
    ("whatsapp", "계정이 해킹당했어요, 도와주세요", "standard"),
    ("email", "My deposit is not credited yet", "standard"),
    ("chat", "Suggestion: please add a dark mode", "standard"),
]


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


async def run_demo(
    keys: dict[str, str],
    *,
    ingest: str = INGEST,
    router: str = ROUTER,
    metrics: str = METRICS,
    run: str | None = None,
    deadline_s: float = 20.0,
) -> dict[str, Any]:
    """Run the demo against a desk; the metrics summary of its own conversations."""
    run = run or uuid.uuid4().hex[:6]

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[name]}"}

    say(f"run {run}: touches and reports only conversations with 'demo-{run}-' in their ref")
    started = datetime.now(UTC)
    async with httpx.AsyncClient(timeout=30) as http:
        for agent, profile in AGENTS.items():
            capacity = {"chat": 3, "email": 8, "telegram": 3, "whatsapp": 3}
            answer = await http.put(
                f"{router}/v1/agents/{agent}",
                headers=auth("ops"),
                json={"name": agent.title(), **profile, "capacity": capacity},
            )
            answer.raise_for_status()
            await http.put(
                f"{router}/v1/agents/{agent}/status",
                headers=auth(f"agent-{agent}"),
                json={"status": "online"},
            )
        say(f"agents online: {', '.join(AGENTS)}")
        ours: set[str] = set()  # conversation keys of this run
        for n, (channel, text, tier) in enumerate(MESSAGES, 1):
            answer = await http.post(
                f"{ingest}/v1/messages",
                headers=auth("ingest"),
                json={
                    "channel": channel,
                    "channel_message_id": f"demo-{run}-{n}",
                    "conversation_ref": f"demo-{run}-{n}",
                    "customer": {"id": f"demo-{run}-{n}", "tier": tier},
                    "text": text,
                },
            )
            answer.raise_for_status()
            ours.add(answer.json()["conversation_key"])
            say(f"posted on {channel:9s} {text!r}")
        resolved = await _answer_ours(http, auth, router, ours, time.monotonic() + deadline_s)
        waiting = len(ours) - resolved
        if waiting:
            say(f"{waiting} of this run's conversations are still waiting for an agent")
        window = {"from": started.isoformat(), "to": (datetime.now(UTC) + timedelta(seconds=1))}
        summary = await _summary(http, auth, metrics, window, resolved, deadline_s)
    frt, res = summary["first_response_s"], summary["resolution_s"]
    say(
        f"figures of the {summary['conversations']} conversations opened while the demo ran "
        f"(GET /v1/metrics/summary?from={started.isoformat()}), none from earlier runs:"
    )
    say(f"first response: n={frt['count']} p50={frt['p50']}s p99={frt['p99']}s")
    say(f"resolution:     n={res['count']} p50={res['p50']}s p99={res['p99']}s")
    say(f"try: curl -H 'Authorization: Bearer {keys['ops']}' {metrics}/metrics")
    return dict(summary)


async def _answer_ours(
    http: httpx.AsyncClient,
    auth: Callable[[str], dict[str, str]],
    router: str,
    ours: set[str],
    deadline: float,
) -> int:
    """Each agent replies to and resolves the conversations of this run it holds, and only
    those (earlier runs' open conversations stay as they are); how many were resolved."""
    done: set[str] = set()
    while len(done) < len(ours) and time.monotonic() < deadline:
        for agent in AGENTS:
            got = await http.get(
                f"{router}/v1/agents/{agent}/assignments",
                params={"wait": 0.5},
                headers=auth(f"agent-{agent}"),
            )
            got.raise_for_status()
            for conv in got.json()["conversations"]:
                if conv["conversation_key"] not in ours or conv["conversation_key"] in done:
                    continue
                c = conv["classification"]
                say(
                    f"{agent:6s} got {conv['channel']:9s} {c['priority']:7s} {c['skill']:9s} "
                    f"{c['language']}  rules: {', '.join(c['rules_fired'])}"
                )
                # An agent frontend sends each action with a key of its own, so that it can
                # retry after a lost answer without the customer getting the reply twice.
                agent_auth = auth(f"agent-{agent}")
                for action, body in (
                    ("replies", {"agent_id": agent, "text": "Thanks, we are on it."}),
                    ("resolve", {"agent_id": agent}),
                ):
                    answer = await http.post(
                        f"{router}/v1/conversations/{conv['id']}/{action}",
                        headers={**agent_auth, "Idempotency-Key": f"{action}-{conv['id']}"},
                        json=body,
                    )
                    answer.raise_for_status()
                done.add(conv["conversation_key"])
        await asyncio.sleep(0.2)  # agents holding earlier conversations answer at once
    return len(done)


async def _summary(
    http: httpx.AsyncClient,
    auth: Callable[[str], dict[str, str]],
    metrics: str,
    window: dict[str, Any],
    resolved: int,
    deadline_s: float,
) -> dict[str, Any]:
    """The summary of the window, once metrics has folded this run's resolutions."""
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in window.items()}
    deadline = time.monotonic() + deadline_s
    while True:
        answer = await http.get(f"{metrics}/v1/metrics/summary", params=params, headers=auth("ops"))
        answer.raise_for_status()
        summary: dict[str, Any] = answer.json()
        if summary["resolution_s"]["count"] >= resolved or time.monotonic() > deadline:
            return summary
        await asyncio.sleep(0.25)
