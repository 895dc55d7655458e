"""How the pure routing decision scales: agent choice with 100 to 100,000 agents, and the pull
from a queue of 100,000 conversations, next to brute-force reference implementations."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.router.routing.queue import QueuedConversation, next_for_agent, queue_key
from services.router.routing.select import AgentView, Need, choose_agent, is_eligible
from shared.events import AgentStatus, Channel, Priority, Skill

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SKILLS = [Skill.SECURITY, Skill.FUNDS, Skill.TRADING, Skill.GENERAL]
LANGUAGES = ["en", "zh", "ja", "ko"]


def make_agents(n: int, rng: random.Random) -> list[AgentView]:
    return [
        AgentView(
            id=f"a{i}",
            status=rng.choice([AgentStatus.ONLINE, AgentStatus.ONLINE, AgentStatus.AWAY]),
            skills={s.value: rng.randint(1, 5) for s in rng.sample(SKILLS, 2)},
            languages=frozenset(rng.sample(LANGUAGES, 2)),
            capacity={"chat": 4},
            load={"chat": rng.randint(0, 4)},
            last_assigned_at=T0 + timedelta(seconds=rng.randint(0, 86400)),
        )
        for i in range(n)
    ]


def brute_force_choice(agents: list[AgentView], need: Need) -> AgentView | None:
    """Reference: every eligible agent, fully sorted by the documented order."""
    eligible = [a for a in agents if is_eligible(a, need)]
    eligible.sort(
        key=lambda a: (
            a.occupancy(need.channel),
            a.last_assigned_at is not None,
            a.last_assigned_at or T0,
            a.id,
        )
    )
    return eligible[0] if eligible else None


def _per_call_us(fn: Any, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def _per_need_us(choose: Any, agents: list[AgentView], needs: list[Need], reps: int) -> float:
    total = _per_call_us(lambda: [choose(agents, need) for need in needs], reps)
    return round(total / len(needs), 1)


def agent_choice(sizes: list[int], *, calls: int = 20) -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows = []
    for n in sizes:
        agents = make_agents(n, rng)
        needs = [Need(Channel.CHAT, rng.choice(SKILLS), rng.choice(LANGUAGES)) for _ in range(8)]
        for need in needs:  # the fast path must agree with the reference
            assert choose_agent(agents, need) == brute_force_choice(agents, need)
        reps = max(1, calls * 1000 // max(n, 1000))
        rows.append(
            {
                "agents": n,
                "choose_us": _per_need_us(choose_agent, agents, needs, reps),
                "brute_force_us": _per_need_us(brute_force_choice, agents, needs, reps),
            }
        )
    return rows


def queue_pull(queued_n: int, *, calls: int = 5) -> dict[str, Any]:
    rng = random.Random(11)
    now = T0 + timedelta(hours=2)
    queued = [
        QueuedConversation(
            uuid.UUID(int=rng.getrandbits(128)),
            rng.choice(list(Priority)),
            T0 + timedelta(seconds=rng.randint(0, 7200)),
            Need(Channel.CHAT, rng.choice(SKILLS), rng.choice(LANGUAGES)),
        )
        for _ in range(queued_n)
    ]
    agent = make_agents(1, rng)[0]
    agent = AgentView(**{**agent.__dict__, "status": AgentStatus.ONLINE, "load": {"chat": 0}})

    def reference() -> QueuedConversation | None:
        ordered = sorted(queued, key=lambda q: queue_key(q, now=now, step_s=600))
        return next((q for q in ordered if is_eligible(agent, q.need)), None)

    fast = next_for_agent(queued, agent, now=now, step_s=600)
    assert fast == reference()
    return {
        "queued": queued_n,
        "pull_ms": round(
            _per_call_us(lambda: next_for_agent(queued, agent, now=now, step_s=600), calls) / 1000,
            2,
        ),
        "brute_force_ms": round(_per_call_us(reference, calls) / 1000, 2),
        "window_25_per_priority_us": round(
            _per_call_us(lambda: next_for_agent(queued[:100], agent, now=now, step_s=600), 200), 1
        ),
    }
