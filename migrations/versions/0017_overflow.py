"""Overflow: a conversation nobody could take widens its need after a wait (the rules file's
``overflow`` stages). The router keeps on the conversation how many stages it went through
(``overflow_stage``), the languages it was widened to (``fallback_languages``), the team it
was handed to (``overflow_team``; a fallback skill replaces ``skill`` itself, as a transfer to
a skill's queue does) and, once its last stage was applied, since when it has been stuck
(``stuck_since``: counted while it waits). Metrics keeps ``stuck_since`` of the conversations
stuck in the router's queue now, for ``switchboard_conversations_stuck`` and the dashboard.

No new index on the router's side: the overflow sweep reads queued conversations as the
escalation sweep does. Metrics' stuck gauge reads few rows of a table with history, through a
partial index.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UPGRADE = [
    """ALTER TABLE router.conversations
       ADD COLUMN overflow_stage smallint NOT NULL DEFAULT 0,
       ADD COLUMN fallback_languages text[] NOT NULL DEFAULT '{}',
       ADD COLUMN overflow_team text,
       ADD COLUMN stuck_since timestamptz""",
    "ALTER TABLE metrics.conversations ADD COLUMN stuck_since timestamptz",
    """CREATE INDEX conversations_stuck ON metrics.conversations (stuck_since)
       WHERE stuck_since IS NOT NULL""",
]

DOWNGRADE = [
    "DROP INDEX metrics.conversations_stuck",
    "ALTER TABLE metrics.conversations DROP COLUMN stuck_since",
    """ALTER TABLE router.conversations DROP COLUMN overflow_stage,
       DROP COLUMN fallback_languages, DROP COLUMN overflow_team, DROP COLUMN stuck_since""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
