"""``make demo``: seed three agents, post a handful of messages in several languages, let the
agents answer and resolve, and print what the desk and the metrics saw."""

from __future__ import annotations

import asyncio
import uuid

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


async def run_demo(keys: dict[str, str]) -> None:
    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[name]}"}

    async with httpx.AsyncClient(timeout=30) as http:
        for agent, profile in AGENTS.items():
            capacity = {"chat": 3, "email": 8, "telegram": 3, "whatsapp": 3}
            answer = await http.put(
                f"{ROUTER}/v1/agents/{agent}",
                headers=auth("ops"),
                json={"name": agent.title(), **profile, "capacity": capacity},
            )
            answer.raise_for_status()
            await http.put(
                f"{ROUTER}/v1/agents/{agent}/status",
                headers=auth(f"agent-{agent}"),
                json={"status": "online"},
            )
        say(f"agents online: {', '.join(AGENTS)}")
        for channel, text, tier in MESSAGES:
            answer = await http.post(
                f"{INGEST}/v1/messages",
                headers=auth("ingest"),
                json={
                    "channel": channel,
                    "channel_message_id": uuid.uuid4().hex,
                    "conversation_ref": uuid.uuid4().hex[:8],
                    "customer": {"id": f"cust-{uuid.uuid4().hex[:6]}", "tier": tier},
                    "text": text,
                },
            )
            answer.raise_for_status()
            say(f"posted on {channel:9s} {text!r}")
        await asyncio.sleep(1.0)
        for agent in AGENTS:
            got = await http.get(
                f"{ROUTER}/v1/agents/{agent}/assignments",
                params={"wait": 2},
                headers=auth(f"agent-{agent}"),
            )
            for conv in got.json()["conversations"]:
                c = conv["classification"]
                say(
                    f"{agent:6s} got {conv['channel']:9s} {c['priority']:7s} {c['skill']:9s} "
                    f"{c['language']}  rules: {', '.join(c['rules_fired'])}"
                )
                # An agent frontend sends each action with a key of its own, so that it can
                # retry after a lost answer without the customer getting the reply twice.
                await http.post(
                    f"{ROUTER}/v1/conversations/{conv['id']}/replies",
                    headers={**auth(f"agent-{agent}"), "Idempotency-Key": f"reply-{conv['id']}"},
                    json={"agent_id": agent, "text": "Thanks, we are on it."},
                )
                await http.post(
                    f"{ROUTER}/v1/conversations/{conv['id']}/resolve",
                    headers={**auth(f"agent-{agent}"), "Idempotency-Key": f"resolve-{conv['id']}"},
                    json={"agent_id": agent},
                )
        await asyncio.sleep(1.5)
        summary = (await http.get(f"{METRICS}/v1/metrics/summary", headers=auth("ops"))).json()
        frt, res = summary["first_response_s"], summary["resolution_s"]
        say(f"conversations: {summary['conversations']}")
        say(f"first response: n={frt['count']} p50={frt['p50']}s p99={frt['p99']}s")
        say(f"resolution:     n={res['count']} p50={res['p50']}s p99={res['p99']}s")
        say(f"try: curl -H 'Authorization: Bearer {keys['ops']}' {METRICS}/metrics")
