"""Metrics keeps where each conversation stands with the router now, for the live views: the
agent whose slot it holds (``held_by``: offered or assigned) and, while it waits in the
router's queue, its age there (``queued_since``). The timeline now also holds the router's
queueing, offers, offer expiries and transfers, and its folds say the same (``held_by``,
``queued``, ``queued_at``, ``queue_reset``).

Conversations folded before this revision have none of those entries: they are taken to stand
as the views counted them until now (held by the agent assigned last until resolved; queued
from opening until first assigned), on the row and in the folds kept on their timeline, which
the next event folds on from.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPGRADE = [
    """ALTER TABLE metrics.conversations
       ADD COLUMN held_by text, ADD COLUMN queued_since timestamptz""",
    # Both live views read few rows of a table that grows with history.
    """CREATE INDEX conversations_held_by ON metrics.conversations (held_by, channel)
       WHERE held_by IS NOT NULL""",
    """CREATE INDEX conversations_queued ON metrics.conversations (queued_since)
       WHERE queued_since IS NOT NULL""",
    """UPDATE metrics.conversations SET
         held_by = CASE WHEN resolved_at IS NULL AND assignments > 0 THEN agent_id END,
         queued_since = CASE WHEN opened_at IS NOT NULL AND first_assigned_at IS NULL
                              AND resolved_at IS NULL THEN opened_at END
       WHERE resolved_at IS NULL""",
    """UPDATE metrics.timeline SET state = state || jsonb_build_object(
         'held_by', CASE WHEN state->>'resolved_at' IS NULL
                          AND CAST(state->>'assignments' AS integer) > 0
                         THEN state->'agent_id' ELSE 'null'::jsonb END,
         'queued', state->>'opened_at' IS NOT NULL
                   AND CAST(state->>'assignments' AS integer) = 0
                   AND state->>'resolved_at' IS NULL,
         'queued_at', state->'opened_at',
         'queue_reset', false)
       WHERE state IS NOT NULL""",
]

DOWNGRADE = [
    """UPDATE metrics.timeline
       SET state = state - 'held_by' - 'queued' - 'queued_at' - 'queue_reset'
       WHERE state IS NOT NULL""",
    "DELETE FROM metrics.timeline WHERE moment IN ('transferred', 'offer_timed_out', 'queued', "
    "'offered')",
    "DROP INDEX metrics.conversations_queued",
    "DROP INDEX metrics.conversations_held_by",
    "ALTER TABLE metrics.conversations DROP COLUMN queued_since, DROP COLUMN held_by",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
