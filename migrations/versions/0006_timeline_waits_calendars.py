"""Metrics from each conversation's timeline: first responses per episode and next replies
(metrics.waits), business-hours calendars and business-time measures, teams, agents.

The measures stop being generated columns: they are derived in Python from the timeline
(services/metrics/facts.py), which a calendar makes more than a difference of two columns.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = [
    # Every moment of a conversation that a time is measured from or to.
    """CREATE TABLE metrics.timeline (
        event_id        uuid PRIMARY KEY,
        conversation_id uuid NOT NULL
                        REFERENCES metrics.conversations (conversation_id) ON DELETE CASCADE,
        moment          text NOT NULL,
        at              timestamptz NOT NULL,
        agent_id        text,
        team            text
    )""",
    "CREATE INDEX timeline_conversation ON metrics.timeline (conversation_id)",
    """ALTER TABLE metrics.conversations
        DROP COLUMN first_response_s, DROP COLUMN resolution_s, DROP COLUMN queue_wait_s""",
    """ALTER TABLE metrics.conversations
        ADD COLUMN team text,
        ADD COLUMN reopens integer NOT NULL DEFAULT 0,
        ADD COLUMN resolution_s double precision,
        ADD COLUMN resolution_bs double precision,
        ADD COLUMN queue_wait_s double precision,
        ADD COLUMN queue_wait_bs double precision""",
    # One row per answered customer wait: 'first' (first response of an episode) or 'next'.
    # The conversation's dimensions are copied in so that a report scans one table.
    """CREATE TABLE metrics.waits (
        conversation_id  uuid NOT NULL
                         REFERENCES metrics.conversations (conversation_id) ON DELETE CASCADE,
        seq              integer NOT NULL,
        kind             text NOT NULL CHECK (kind IN ('first', 'next')),
        episode          integer NOT NULL,
        started_at       timestamptz NOT NULL,
        replied_at       timestamptz NOT NULL,
        seconds          double precision NOT NULL,
        business_seconds double precision NOT NULL,
        opened_at        timestamptz,
        channel          text NOT NULL,
        priority         text,
        skill            text,
        language         text,
        agent_id         text,  -- the agent who replied
        customer_tier    text,
        team             text,
        PRIMARY KEY (conversation_id, seq)
    )""",
    "CREATE INDEX waits_opened ON metrics.waits (opened_at)",
    """CREATE TABLE metrics.calendars (
        name       text PRIMARY KEY,
        time_zone  text NOT NULL,
        weekly     jsonb NOT NULL,
        holidays   date[] NOT NULL DEFAULT '{}',
        channels   text[] NOT NULL DEFAULT '{}',
        teams      text[] NOT NULL DEFAULT '{}'
    )""",
    # What the agent-events topic says of each agent (live view: online, capacity, team).
    """CREATE TABLE metrics.agents (
        agent_id   text PRIMARY KEY,
        status     text NOT NULL DEFAULT 'offline',
        status_at  timestamptz,
        team       text,
        capacity   jsonb NOT NULL DEFAULT '{}',
        profile_at timestamptz
    )""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for table in ("agents", "calendars", "waits", "timeline"):
        op.execute(f"DROP TABLE metrics.{table}")
    op.execute(
        """ALTER TABLE metrics.conversations DROP COLUMN team, DROP COLUMN reopens,
           DROP COLUMN resolution_s, DROP COLUMN resolution_bs, DROP COLUMN queue_wait_s,
           DROP COLUMN queue_wait_bs"""
    )
    for name, expr in {
        "first_response_s": "first_response_at - first_message_at",
        "resolution_s": "resolved_at - opened_at",
        "queue_wait_s": "first_assigned_at - opened_at",
    }.items():
        op.execute(
            f"ALTER TABLE metrics.conversations ADD COLUMN {name} double precision "
            f"GENERATED ALWAYS AS (CASE WHEN date_part('epoch', {expr}) < 0 THEN 0 "
            f"ELSE date_part('epoch', {expr}) END) STORED"
        )
