"""The router reads only the few best candidates from PostgreSQL; its order must be the pure
ranking's (routing/select.py), or the least-loaded agent could be left out of the read, and
its eligibility the pure ``is_eligible`` (the SQL is generated from ``ELIGIBILITY``), for one
need (``candidates``, overflowed or not) and for a batch's needs (``lock_agents_for``)."""

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from services.router.intake_store import IntakeStore
from services.router.routing.select import Need, is_eligible, rank_candidates
from shared.db import make_engine, make_sessionmaker
from shared.events import Channel, Skill

CHANNELS = ["chat", "email"]


async def test_the_candidates_read_are_the_best_of_the_pure_ranking(database_url):
    engine = make_engine(database_url, pool_size=1)
    sessions = make_sessionmaker(engine)
    rng = random.Random(7)
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    sizes: list[int] = []
    try:
        for round_ in range(6):
            async with sessions() as session, session.begin():
                store = IntakeStore(session)
                await session.execute(text("DELETE FROM router.agent_slots"))
                await session.execute(text("DELETE FROM router.agents"))
                for i in range(40):
                    # Mixed case ids: code-point order differs from a locale's collation.
                    agent_id = rng.choice(["Agent", "agent", "AGENT", "bob", "Bob"]) + f"-{i}"
                    await store.upsert_agent(
                        agent_id=agent_id,
                        name=agent_id,
                        skills={
                            "funds": rng.choice([1, 2, 3]),
                            "general": 1,
                            **rng.choice([{}, {"api": 2}, {"security": rng.choice([1, 3])}]),
                        },
                        languages=rng.choice([["en"], ["en", "zh"], ["zh"]]),
                        capacity={c: rng.choice([0, 2, 3, 4, 6]) for c in CHANNELS},
                        team=rng.choice([None, "apac", "vip"]),
                        max_load=rng.choice([None, None, 4]),
                    )
                    idle = rng.choice([None, now - timedelta(minutes=rng.choice([1, 2, 5]))])
                    await session.execute(
                        text(
                            """UPDATE router.agents SET status = :status, last_assigned_at = :at
                               WHERE id = :id"""
                        ),
                        {
                            "id": agent_id,
                            "status": rng.choice(["online", "online", "online", "away"]),
                            "at": idle,
                        },
                    )
                    for channel in CHANNELS:
                        load = rng.choice([0, 0, 1, 2, 3])
                        await session.execute(
                            text(
                                """UPDATE router.agent_slots SET load = LEAST(:load, capacity)
                                   WHERE agent_id = :id AND channel = :channel"""
                            ),
                            {"id": agent_id, "channel": channel, "load": load},
                        )
                everyone = await store.agents()
                batch = [
                    Need(Channel.CHAT, Skill.FUNDS, "en"),
                    Need(Channel.EMAIL, Skill.FUNDS, "zh", min_level=2),
                    Need(Channel.CHAT, Skill.GENERAL, "en", team="apac"),
                    Need(Channel.CHAT, Skill.API, "und"),
                ]
                excluded = frozenset(rng.sample(sorted(a.id for a in everyone), 5))
                overflowed = [
                    Need(Channel.CHAT, Skill.FUNDS, "de", fallback_languages=frozenset({"zh"})),
                    Need(Channel.EMAIL, Skill.SECURITY, "en", min_level=2, overflow_team="vip"),
                    Need(Channel.CHAT, Skill.FUNDS, "en", team="apac", excluded=excluded),
                ]
                for need in batch + overflowed:
                    best = [a.id for a in rank_candidates(everyone, need)]
                    sizes.append(len(best))
                    read = await store.candidates(need, limit=5)
                    assert [a.id for a in rank_candidates(read, need)] == best[:5], round_
                    rest = await store.candidates(need, limit=100, skip=best[:5])
                    assert [a.id for a in rank_candidates(rest, need)] == best[5:], round_
                    assert all(is_eligible(a, need) for a in [*read, *rest]), round_
                # A batch locks, for each of its needs, its best eligible agents and no others.
                locked = await store.lock_agents_for(batch, [], best=3)
                wanted = {a.id for n in batch for a in rank_candidates(everyone, n)[:3]}
                assert set(locked) == wanted, round_
    finally:
        await engine.dispose()
    assert min(sizes) < 5 < max(sizes)  # short lists and lists cut by the limit were both seen
