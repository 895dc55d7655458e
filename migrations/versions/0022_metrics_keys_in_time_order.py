"""Metrics' per-event keys follow time, so a new event's index entries land beside the last
ones instead of on a random page of an index that grows with history.

Event ids are random (UUIDs derived from content), and two indexes took one entry per event:
``processed_events`` (event_id) and the timeline's primary key (event_id). Over 1,000,000
conversations of history (5,000,000 events) each insert went to a page of its own, read and
written again; the fold's claim took 17.8 ms a batch against 4.5 on empty tables, and its
timeline insert 39.9 against 16.9 (pg_stat_statements, docs/throughput.md).

- ``processed_events`` is keyed by (occurred_at, event_id). An event's id comes with one
  occurred_at (it is published once from one outbox row, or republished as it was), so the
  pair is as unique as the id, and the live desk's events all sort near now. Rows that exist
  take the time of their timeline entry, or when they were processed for events without one:
  such an event, if it were delivered again after the upgrade, would not be found; the
  consumers' offsets are committed before an upgrade, so only a replayed dead letter could be,
  and a dead letter was never processed.
- The timeline's primary key becomes (conversation_id, at, event_id), which also serves the
  reads by (conversation, time): one index instead of two, each conversation's entries on the
  same page.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

UPGRADE = [
    """CREATE TABLE metrics.processed_events_by_time AS
       SELECT p.event_id, coalesce(t.at, p.processed_at) AS occurred_at, p.processed_at
       FROM metrics.processed_events p LEFT JOIN metrics.timeline t USING (event_id)""",
    "DROP TABLE metrics.processed_events",
    "ALTER TABLE metrics.processed_events_by_time RENAME TO processed_events",
    """ALTER TABLE metrics.processed_events
         ALTER COLUMN occurred_at SET NOT NULL,
         ALTER COLUMN processed_at SET NOT NULL,
         ALTER COLUMN processed_at SET DEFAULT now(),
         ADD PRIMARY KEY (occurred_at, event_id)""",
    """ALTER TABLE metrics.timeline DROP CONSTRAINT timeline_pkey,
         ADD PRIMARY KEY (conversation_id, at, event_id)""",
    "DROP INDEX metrics.timeline_conversation_at",
]

DOWNGRADE = [
    "CREATE INDEX timeline_conversation_at ON metrics.timeline (conversation_id, at)",
    """ALTER TABLE metrics.timeline DROP CONSTRAINT timeline_pkey,
         ADD PRIMARY KEY (event_id)""",
    """ALTER TABLE metrics.processed_events DROP CONSTRAINT processed_events_pkey,
         DROP COLUMN occurred_at, ADD PRIMARY KEY (event_id)""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
