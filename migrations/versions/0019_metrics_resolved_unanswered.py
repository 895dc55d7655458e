"""The conversations resolved without a reply and not marked breached, by resolution time:
an SLA sweep after a backlog also finds those resolved after their target without an answer
(a breach as real as a late reply), reading only those resolved since the previous sweep.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE INDEX conversations_resolved_unanswered ON metrics.conversations (resolved_at)
           WHERE first_response_at IS NULL AND sla_breached_at IS NULL
             AND resolved_at IS NOT NULL"""
    )


def downgrade() -> None:
    op.execute("DROP INDEX metrics.conversations_resolved_unanswered")
