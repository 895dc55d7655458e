"""Metrics at millions of conversations: what a Prometheus scrape shows is kept up to date as
the facts are written, SLA sweeps read only the conversations still awaiting a reply, and
their clock is the event time that has been folded.

- ``scrape_totals`` and ``scrape_deltas``: the counters and histograms of ``/metrics`` per
  (kind, channel, priority, bucket). Statement triggers on ``conversations`` and ``waits``
  append, for each statement, what its rows add and take away (from the transition tables:
  set-based, a few rows per statement, and appends that never wait on another transaction);
  the metrics service folds the deltas into the totals now and then. A scrape sums the two:
  the same cost at any history size, exact for what was written.
- ``conversations_awaiting_reply``: the live conversations (opened, not answered, not
  resolved), the only ones a sweep judges while they wait; ``conversations_answered``: by
  first reply, for the answers folded since the previous sweep (a backlog folds a message
  and its late reply in one batch: the breach is still announced).
- ``fold_clock``: per partition of the conversation-events topic, the event time up to which
  its events are folded (the metrics process that owns it writes it); ``sla_sweep``: the
  clock the previous sweep judged at.

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Callable

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# services/metrics/exposition.py BUCKETS_S (a test holds them equal): a value's bucket is the
# first bound at or above it, len(BOUNDS) past the last.
BUCKETS_S = (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
BOUNDS = f"ARRAY[{', '.join(map(str, BUCKETS_S))}]::float8[]"


def _bucket(value: str) -> str:
    # width_bucket counts the bounds at or below the value; a value on a bound is in its bucket.
    return (
        f"CASE WHEN {value} = ANY({BOUNDS}) THEN width_bucket({value}, {BOUNDS}) - 1 "
        f"ELSE width_bucket({value}, {BOUNDS}) END"
    )


def _conversations(rows: str, sign: str) -> str:
    """What the conversations of a transition table count, times ``sign``."""
    return f"""SELECT k.kind, r.channel, coalesce(r.priority, 'unclassified') AS priority,
              k.bucket, {sign} * k.n AS n, {sign} * k.total AS total
       FROM {rows} r CROSS JOIN LATERAL (VALUES
         ('opened', 0, (r.opened_at IS NOT NULL)::int, 0::float8),
         ('resolved', 0, (r.resolved_at IS NOT NULL)::int, 0::float8),
         ('messages', 0, r.customer_messages, 0::float8),
         ('breached', 0, (r.sla_breached_at IS NOT NULL)::int, 0::float8),
         ('resolution_s', {_bucket("r.resolution_s")}, (r.resolution_s IS NOT NULL)::int,
          coalesce(r.resolution_s, 0))
       ) AS k(kind, bucket, n, total)
       WHERE k.n <> 0"""


def _waits(rows: str, sign: str) -> str:
    return f"""SELECT 'first_response_s' AS kind, r.channel,
              coalesce(r.priority, 'unclassified') AS priority, {_bucket("r.seconds")} AS bucket,
              {sign} * 1 AS n, {sign} * r.seconds AS total
       FROM {rows} r WHERE r.kind = 'first'"""


def _function(name: str, part: Callable[[str, str], str]) -> str:
    def delta(*sources: str) -> str:
        return f"""INSERT INTO metrics.scrape_deltas (kind, channel, priority, bucket, n, total)
            SELECT kind, channel, priority, bucket, sum(n), sum(total)
            FROM ({" UNION ALL ".join(sources)}) d
            GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 OR sum(total) <> 0"""

    return f"""CREATE FUNCTION metrics.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {delta(part("new_rows", "1"))};
        ELSIF TG_OP = 'UPDATE' THEN
            {delta(part("new_rows", "1"), part("old_rows", "-1"))};
        ELSE
            {delta(part("old_rows", "-1"))};
        END IF;
        RETURN NULL;
    END $$"""


def _triggers(table: str, function: str) -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_scrape_insert AFTER INSERT ON metrics.{table}
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION metrics.{function}()""",
        f"""CREATE TRIGGER {table}_scrape_update AFTER UPDATE ON metrics.{table}
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION metrics.{function}()""",
        f"""CREATE TRIGGER {table}_scrape_delete AFTER DELETE ON metrics.{table}
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION metrics.{function}()""",
        f"""CREATE TRIGGER {table}_scrape_truncate AFTER TRUNCATE ON metrics.{table}
            FOR EACH STATEMENT EXECUTE FUNCTION metrics.scrape_truncated()""",
    ]


CONVERSATION_KINDS = "('opened', 'resolved', 'messages', 'breached', 'resolution_s')"

UPGRADE = [
    """CREATE TABLE metrics.scrape_totals (
        kind     text NOT NULL,
        channel  text NOT NULL,
        priority text NOT NULL,
        bucket   integer NOT NULL,
        n        bigint NOT NULL,
        total    double precision NOT NULL,
        PRIMARY KEY (kind, channel, priority, bucket)
    )""",
    """CREATE TABLE metrics.scrape_deltas (
        kind     text NOT NULL,
        channel  text NOT NULL,
        priority text NOT NULL,
        bucket   integer NOT NULL,
        n        bigint NOT NULL,
        total    double precision NOT NULL
    )""",
    _function("scrape_conversations", _conversations),
    _function("scrape_waits", _waits),
    f"""CREATE FUNCTION metrics.scrape_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'conversations' THEN
            DELETE FROM metrics.scrape_totals WHERE kind IN {CONVERSATION_KINDS};
            DELETE FROM metrics.scrape_deltas WHERE kind IN {CONVERSATION_KINDS};
        ELSE
            DELETE FROM metrics.scrape_totals WHERE kind = 'first_response_s';
            DELETE FROM metrics.scrape_deltas WHERE kind = 'first_response_s';
        END IF;
        RETURN NULL;
    END $$""",
    *_triggers("conversations", "scrape_conversations"),
    *_triggers("waits", "scrape_waits"),
    f"""INSERT INTO metrics.scrape_totals
        SELECT kind, channel, priority, bucket, sum(n), sum(total)
        FROM ({_conversations("metrics.conversations", "1")}
              UNION ALL {_waits("metrics.waits", "1")}) d
        GROUP BY 1, 2, 3, 4""",
    """CREATE INDEX conversations_awaiting_reply ON metrics.conversations (first_message_at)
       WHERE opened_at IS NOT NULL AND first_response_at IS NULL AND resolved_at IS NULL""",
    """CREATE INDEX conversations_answered ON metrics.conversations (first_response_at)
       WHERE sla_breached_at IS NULL AND first_response_at IS NOT NULL""",
    """CREATE TABLE metrics.fold_clock (
        topic      text NOT NULL,
        partition  integer NOT NULL,
        folded_to  timestamptz NOT NULL,
        PRIMARY KEY (topic, partition)
    )""",
    """CREATE TABLE metrics.sla_sweep (
        id         boolean PRIMARY KEY DEFAULT true CHECK (id),
        swept_to   timestamptz
    )""",
    "INSERT INTO metrics.sla_sweep (swept_to) VALUES (NULL)",
]

DOWNGRADE = [
    "DROP TABLE metrics.sla_sweep",
    "DROP TABLE metrics.fold_clock",
    "DROP INDEX metrics.conversations_answered",
    "DROP INDEX metrics.conversations_awaiting_reply",
    *(
        f"DROP TRIGGER {table}_scrape_{op_} ON metrics.{table}"
        for table in ("conversations", "waits")
        for op_ in ("insert", "update", "delete", "truncate")
    ),
    "DROP FUNCTION metrics.scrape_truncated()",
    "DROP FUNCTION metrics.scrape_waits()",
    "DROP FUNCTION metrics.scrape_conversations()",
    "DROP TABLE metrics.scrape_deltas",
    "DROP TABLE metrics.scrape_totals",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
