"""Metrics folds a conversation's new event from where its timeline stood, not from the start.

Each timeline entry keeps the fold after it (``state``: facts so far, whether a customer is
waiting, how many waits were answered; services/metrics/facts.py ``Fold``), so an event is
folded from the entry before it and the entries after it, found by the index on
(conversation, time). ``conversations.calendar`` names the calendar the waits were timed in:
another one (a transfer to another team) times them all again. Entries from before this
revision have no state; a conversation's next event folds its whole timeline once.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE metrics.timeline ADD COLUMN state jsonb",
    "CREATE INDEX timeline_conversation_at ON metrics.timeline (conversation_id, at)",
    "DROP INDEX metrics.timeline_conversation",
    "ALTER TABLE metrics.conversations ADD COLUMN calendar text",
]

DOWNGRADE = [
    "ALTER TABLE metrics.conversations DROP COLUMN calendar",
    "CREATE INDEX timeline_conversation ON metrics.timeline (conversation_id)",
    "DROP INDEX metrics.timeline_conversation_at",
    "ALTER TABLE metrics.timeline DROP COLUMN state",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
