"""A router schema that already holds history: N conversations (1,000,000 by default) with
their messages, as a desk that has run for months leaves them, generated inside PostgreSQL.

Most conversations are resolved (over the last 90 days, the last day's within the reopen
window); a few thousand are still open, queued or assigned to the seeded agents. Threads
repeat: one key in ten has had an earlier conversation, so a look-up by thread meets the
resolved ones too. ``python -m bench.history URL [--conversations N]`` fills a migrated
database; the benches call ``seed_router_history``."""

from __future__ import annotations

import argparse
import asyncio
import time

from sqlalchemy import text

from shared.db import make_engine

AGENTS = 500
# Open conversations among the history: assigned ones held by the seeded agents (within
# their capacity) and queued ones nobody could take.
ASSIGNED_PER_AGENT = 2
QUEUED = 2_000

_AGENTS = """
INSERT INTO router.agents (id, name, skills, languages, status)
SELECT 'hist-agent-' || g, 'History agent ' || g,
       jsonb_build_object('general', 2, 'account', 2, 'funds', 1), ARRAY['en', 'zh'],
       'offline'
FROM generate_series(0, :agents - 1) g
ON CONFLICT (id) DO NOTHING
"""
_SLOTS = """
INSERT INTO router.agent_slots (agent_id, channel, capacity, load)
SELECT 'hist-agent-' || g, 'chat', 3, :held FROM generate_series(0, :agents - 1) g
ON CONFLICT DO NOTHING
"""
# g runs over every conversation; the last ones are the open ones.
_CONVERSATIONS = """
INSERT INTO router.conversations
    (id, conversation_key, channel, customer_id, customer_tier, state, priority,
     priority_rank, skill, language, rules_fired, agent_id, last_agent_id, opened_at,
     queued_at, assigned_at, accepted_at, first_response_at, resolved_at)
SELECT md5('hist-conv-' || g)::uuid,
       'hist:' || (g % (:n * 9 / 10)),
       (ARRAY['chat','email','telegram','whatsapp','x','form','messenger'])[1 + g % 7],
       'hist-customer-' || (g % (:n * 9 / 10)), 'standard',
       CASE WHEN g < :n - :open THEN 'resolved'
            WHEN g < :n - :queued THEN 'assigned' ELSE 'queued' END,
       (ARRAY['urgent','high','normal','low'])[1 + g % 4], g % 4,
       (ARRAY['security','funds','trading','api','account','general'])[1 + g % 6],
       (ARRAY['en','zh','ja','ko'])[1 + g % 4], ARRAY['history'],
       CASE WHEN g >= :n - :open AND g < :n - :queued
            THEN 'hist-agent-' || ((g - (:n - :open)) % :agents) END,
       'hist-agent-' || (g % :agents),
       t, t, t + interval '30 seconds', t + interval '30 seconds', t + interval '2 minutes',
       CASE WHEN g < :n - :open THEN t + interval '20 minutes' END
FROM (SELECT g, now() - interval '90 days' + (interval '90 days' * g / :n) AS t
      FROM generate_series(0, :n - 1) g) s
"""
# Two customer messages and one reply per conversation.
_MESSAGES = """
INSERT INTO router.messages
    (id, conversation_id, direction, author, text, channel_message_id, created_at)
SELECT md5('hist-msg-' || g || '-' || m)::uuid, md5('hist-conv-' || g)::uuid,
       CASE WHEN m = 1 THEN 'outbound' ELSE 'inbound' END,
       CASE WHEN m = 1 THEN 'hist-agent-' || (g % :agents) ELSE 'hist-customer-' || g END,
       'message ' || m || ' of a conversation that is history now', 'hist-' || g || '-' || m,
       now() - interval '90 days' + (interval '90 days' * g / :n) + m * interval '1 minute'
FROM generate_series(:lo, :hi - 1) g CROSS JOIN generate_series(0, 2) m
"""
_CHUNK = 200_000


async def seed_router_history(
    database_url: str, conversations: int = 1_000_000, *, progress: bool = True
) -> float:
    """Fill a migrated, empty router schema with ``conversations`` of history; seconds taken."""
    started = time.monotonic()
    open_n = AGENTS * ASSIGNED_PER_AGENT + QUEUED
    params = {
        "n": conversations,
        "agents": AGENTS,
        "held": ASSIGNED_PER_AGENT,
        "open": open_n,
        "queued": QUEUED,
    }
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(_AGENTS), params)
            await conn.execute(text(_SLOTS), params)
            await conn.execute(text(_CONVERSATIONS), params)
        if progress:
            print(f"[history] {conversations:,} conversations written", flush=True)
        for lo in range(0, conversations, _CHUNK):
            hi = min(lo + _CHUNK, conversations)
            async with engine.begin() as conn:
                await conn.execute(text(_MESSAGES), {**params, "lo": lo, "hi": hi})
            if progress:
                print(f"[history] messages of {hi:,}/{conversations:,} conversations", flush=True)
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("agents", "agent_slots", "conversations", "messages"):
                await conn.execute(text(f"VACUUM ANALYZE router.{table}"))
            # The seed's pages written now, not by a checkpoint during what is measured.
            await conn.execute(text("CHECKPOINT"))
    finally:
        await engine.dispose()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("--conversations", type=int, default=1_000_000)
    args = parser.parse_args()
    took = asyncio.run(seed_router_history(args.database_url, args.conversations))
    print(f"[history] done in {took:.1f} s", flush=True)


if __name__ == "__main__":
    main()
