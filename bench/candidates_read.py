"""Reading candidate agents from PostgreSQL as online agents grow: the router's read of the
best few (``RouterStore.candidates``, limit 8) next to reading every eligible agent (the
former way, the baseline), through the same store code, on the same database."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text

from services.router.assign import CANDIDATES_AT_A_TIME
from services.router.routing.select import Need, rank_candidates
from services.router.store import RouterStore
from shared.db import make_engine, make_sessionmaker
from shared.events import Channel, Skill

EMPTY = "TRUNCATE router.agent_slots, router.agents CASCADE"
# Agents as the router stores them: online, a few skills, two languages, chat and email slots
# partly loaded, assigned at different times.
FILL = [
    """INSERT INTO router.agents (id, name, skills, languages, status, last_assigned_at)
       SELECT 'agent-' || g, 'Agent ' || g,
              jsonb_build_object('funds', 1 + g % 3, 'general', 1, 'security', 1 + g % 2),
              string_to_array((ARRAY['en,zh', 'en,ko', 'en,ja'])[1 + g % 3], ','),
              'online', now() - make_interval(secs => g % 3600)
       FROM generate_series(1, :n) g""",
    """INSERT INTO router.agent_slots (agent_id, channel, capacity, load)
       SELECT 'agent-' || g, c, 6, g % 6
       FROM generate_series(1, :n) g, unnest(ARRAY['chat', 'email']) c""",
]


async def run(database_url: str, sizes: list[int], *, repeats: int = 20) -> list[dict[str, Any]]:
    """Best time of ``repeats`` reads for each number of online agents."""
    engine = make_engine(database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    need = Need(Channel.CHAT, Skill.FUNDS, "en")
    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            async with engine.begin() as conn:
                await conn.execute(text(EMPTY))
                for statement in FILL:
                    await conn.execute(text(statement), {"n": n})
                await conn.execute(text("ANALYZE router.agents"))
                await conn.execute(text("ANALYZE router.agent_slots"))
            timings: dict[str, float] = {}
            for name, limit in (("best", CANDIDATES_AT_A_TIME), ("all", n)):
                best = float("inf")
                for _ in range(repeats):
                    async with sessions() as session:
                        t0 = time.perf_counter()
                        found = await RouterStore(session).candidates(need, limit=limit)
                        rank_candidates(found, need)
                        best = min(best, time.perf_counter() - t0)
                timings[name] = round(best * 1e6, 1)
            rows.append(
                {"agents": n, "best_8_us": timings["best"], "all_eligible_us": timings["all"]}
            )
    finally:
        async with engine.begin() as conn:  # leave no agents behind for the pipeline
            await conn.execute(text(EMPTY))
        await engine.dispose()
    return rows
