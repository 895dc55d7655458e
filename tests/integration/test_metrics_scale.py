"""Metrics' paths that run all the time cost the same at any history size: a scrape reads
counters kept as the facts are written (and equals a count of the facts), an SLA sweep reads
only the conversations that can still cross, at the event time folded."""

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from services.metrics.app import create_app
from services.metrics.exposition import BUCKETS_S, aggregates
from services.metrics.scrape_store import ScrapeStore
from services.metrics.settings import MetricsSettings
from services.metrics.sla import crossings
from services.metrics.sla_store import SlaStore
from shared.db import make_sessionmaker
from shared.events import Channel, Priority
from tests.conftest import eventually, running
from tests.integration.scripted import T0, Script, publish

MIGRATION = Path(__file__).parents[2] / "migrations" / "versions" / "0018_metrics_at_scale.py"

# How /metrics counted before its counters were kept: over the whole tables, at every scrape.
RECOUNT = {
    "first_response_s": """SELECT channel, coalesce(priority, 'unclassified') AS priority,
                             seconds AS v FROM metrics.waits WHERE kind = 'first'""",
    "resolution_s": """SELECT channel, coalesce(priority, 'unclassified') AS priority,
                         resolution_s AS v FROM metrics.conversations
                       WHERE resolution_s IS NOT NULL""",
}


async def recount(conn):
    histograms = {}
    for name, source in RECOUNT.items():
        rows = (await conn.execute(text(source))).all()
        by_label = {}
        for channel, priority, v in rows:
            by_label.setdefault((channel, priority), []).append(v)
        histograms[name] = {
            labels: ([sum(v <= b for v in values) for b in BUCKETS_S], len(values))
            for labels, values in by_label.items()
        }
    counts = {
        r.channel: {"opened": r.opened, "resolved": r.resolved, "messages": r.messages}
        for r in await conn.execute(
            text("""SELECT channel, count(opened_at) AS opened, count(resolved_at) AS resolved,
                      coalesce(sum(customer_messages), 0) AS messages
                    FROM metrics.conversations GROUP BY channel""")
        )
    }
    breaches = {
        (r.channel, r.priority): r.n
        for r in await conn.execute(
            text("""SELECT channel, coalesce(priority, 'unclassified') AS priority, count(*) AS n
                    FROM metrics.conversations WHERE sla_breached_at IS NOT NULL
                    GROUP BY 1, 2""")
        )
    }
    return histograms, counts, breaches


def scraped(counts):
    histograms, per_channel, breaches = aggregates(counts)
    return (
        {
            name: {row.labels: (row.cumulative, row.count) for row in rows}
            for name, rows in histograms.items()
        },
        per_channel,
        breaches,
    )


def desk(rng, n):
    scripts = []
    for _ in range(n):
        s = Script(rng.choice(list(Channel)), rng.choice(list(Priority)), t0=T0)
        s.message(0)
        if rng.random() < 0.8:
            s.classified(1)
        if rng.random() < 0.8:
            s.assigned(2, "ann").replied(rng.choice([5, 10, rng.uniform(1, 90_000)]), "ann")
        if rng.random() < 0.6:
            s.resolved(rng.choice([30, 120, rng.uniform(100, 700_000)]), "ann")
            if rng.random() < 0.3:
                s.reopened(800_000).message(800_000).replied(800_100, "ann")
        scripts.append(s)
    return scripts


def test_the_migration_buckets_are_the_scrape_buckets():
    bounds = re.search(r"^BUCKETS_S = \(([^)]*)\)", MIGRATION.read_text(), re.M)
    assert bounds is not None
    assert tuple(float(b) for b in bounds.group(1).split(",")) == BUCKETS_S


async def test_the_scrape_counters_equal_a_count_of_the_facts_after_any_folding(
    common, broker, topics, db, ids
):
    rng = random.Random(17)
    scripts = desk(rng, 150)
    app = create_app(MetricsSettings(**common, scrape_compact_s=3600))
    sessions = make_sessionmaker(db)
    async with running(app) as client:
        sent = await publish(broker, topics, scripts)
        # Replayed in another order: folded again from the middle of their timelines.
        await publish(broker, topics, list(reversed(scripts[:50])))

        async def folded():
            return app.state.consume_loop.applied >= sent + sum(len(s.events) for s in scripts[:50])

        await eventually(folded, what="everything folded")
        async with db.connect() as conn:
            expected = await recount(conn)
        async with sessions() as session:
            before = scraped(await ScrapeStore(session).counts())
        async with sessions() as session, session.begin():
            await ScrapeStore(session).compact()
        async with sessions() as session:
            after = scraped(await ScrapeStore(session).counts())
            deltas = await session.scalar(text("SELECT count(*) FROM metrics.scrape_deltas"))
        # The desk's month-old history is before the default window of 7 days.
        everything = await client.get("/v1/metrics/summary", headers=ids.as_ops)
        today = await client.get(
            "/v1/metrics/summary",
            params={"from": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
            headers=ids.as_ops,
        )
    assert everything.json()["conversations"] == 150
    assert everything.json()["reach"]["read_from_postgres"] is True
    assert today.json()["conversations"] == 0
    assert today.json()["reach"]["read_from_postgres"] is False
    assert sum(expected[1][c]["opened"] for c in expected[1]) == 150
    assert before == expected and after == expected
    assert deltas == 0


async def test_a_scrape_and_a_sweep_read_no_conversation_of_the_history(db, topics):
    sessions = make_sessionmaker(db)
    now = datetime.now(UTC)
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO metrics.sla_policies VALUES ('urgent', '*', 60, 3600)")
        )
        # 40,000 answered conversations of history, and 3 waiting for a reply.
        await conn.execute(
            text("""INSERT INTO metrics.conversations (conversation_id, channel, priority,
                      opened_at, first_message_at, first_response_at, resolved_at)
                    SELECT gen_random_uuid(), 'chat', 'urgent', t, t,
                           t + interval '10 seconds', t + interval '1 hour'
                    FROM (SELECT CAST(:now AS timestamptz) - interval '90 days'
                                 + g * interval '3 minutes' AS t
                          FROM generate_series(1, 40000) g) s"""),
            {"now": now - timedelta(days=1)},
        )
        await conn.execute(
            text("""INSERT INTO metrics.conversations (conversation_id, channel, priority,
                      opened_at, first_message_at)
                    SELECT gen_random_uuid(), 'chat', 'urgent', t, t
                    FROM unnest(CAST(:ts AS timestamptz[])) t"""),
            {"ts": [now - timedelta(seconds=s) for s in (10, 50, 70)]},
        )
    async with db.connect() as conn:
        await conn.execute(text("ANALYZE metrics.conversations"))
        await conn.commit()
    async with sessions() as session, session.begin():
        sla = SlaStore(session)
        await sla.advance_fold_clock(topics.conversation_events, {0: now})
        await sla.swept(now - timedelta(seconds=1))  # the previous sweep
        events = await crossings(sla, topics.conversation_events, now)
        await ScrapeStore(session).counts()
        scans = (
            await session.execute(
                text("""SELECT relname, seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables
                        WHERE schemaname = 'metrics' AND relname IN ('conversations', 'waits')
                        ORDER BY relname""")
            )
        ).all()
    # 50 s of a 60 s target is past 80%: at risk; 70 s is past both.
    assert sorted((type(e).__name__, round(e.elapsed_s)) for e in events) == [
        ("SlaAtRisk", 50),
        ("SlaAtRisk", 70),
        ("SlaBreached", 70),
    ]
    conversations = {r.relname: r for r in scans}["conversations"]
    assert conversations.seq_scan == 0
    assert conversations.idx_tup_fetch < 100  # the live ones, the policies' join aside


HISTORY = [
    """INSERT INTO metrics.conversations (conversation_id, channel, priority, agent_id,
         opened_at, first_message_at, first_response_at, resolved_at, resolution_s,
         resolution_bs, queue_wait_s, queue_wait_bs, assignments, customer_messages,
         agent_replies)
       SELECT gen_random_uuid(), (ARRAY['chat', 'email', 'x'])[1 + g % 3],
              (ARRAY['urgent', 'low'])[1 + g % 2], 'agent-' || g % 7, t, t,
              t + make_interval(secs => g % 97), t + make_interval(secs => 100 + g % 1000),
              100 + g % 1000, 50 + g % 500, g % 13, g % 11, 1 + g % 2, 1 + g % 4, 1
       FROM (SELECT g, CAST(:now AS timestamptz) - g * interval '13 minutes' AS t
             FROM generate_series(1, 3000) g) s""",
    """INSERT INTO metrics.waits (conversation_id, seq, kind, episode, started_at, replied_at,
         seconds, business_seconds, opened_at, channel, priority, agent_id)
       SELECT conversation_id, 0, 'first', 0, first_message_at, first_response_at,
              date_part('epoch', first_response_at - first_message_at),
              date_part('epoch', first_response_at - first_message_at) / 2,
              opened_at, channel, priority, agent_id
       FROM metrics.conversations""",
]


async def test_a_window_bounds_the_columns_held_and_reports_past_it_read_postgresql(db):
    from services.metrics.report import Filters
    from services.metrics.report_cache import ReportCache

    now = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
    async with db.begin() as conn:
        for statement in HISTORY:  # 3,000 conversations over 27 days
            await conn.execute(text(statement), {"now": now})
    sessions = make_sessionmaker(db)
    clock = [now]
    windowed = ReportCache(sessions, window=timedelta(days=7), now=lambda: clock[0])
    everything = ReportCache(sessions)
    week_ago = windowed.window_start()
    assert week_ago == datetime(2026, 11, 23, 12, tzinfo=UTC)
    asked = [
        (Filters(), ("channel", "priority")),
        (Filters(start=now - timedelta(days=20), end=now - timedelta(days=10)), ("agent_id",)),
        (Filters(start=now - timedelta(days=3), channel="chat"), ("priority",)),
    ]
    for filters, group_by in asked:
        assert await windowed.summary(
            filters, group_by=group_by, clock="calendar"
        ) == await everything.summary(filters, group_by=group_by, clock="calendar")
    in_window = 7 * 24 * 60 // 13 + 2  # opened at or after the window's first hour
    assert abs(windowed.held - in_window) <= 5 and everything.held == 3000
    assert [windowed.reach(f).read_from_postgres for f, _ in asked] == [True, True, False]

    clock[0] = now + timedelta(days=3)  # the window moves on: three days fewer are held
    await windowed.summary(Filters(start=now), group_by=(), clock="calendar")
    assert abs(windowed.held - (in_window - 3 * 24 * 60 // 13)) <= 5
