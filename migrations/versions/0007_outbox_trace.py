"""The trace context an outbox event was made in, so its publication joins that trace.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE router.outbox ADD COLUMN trace text")


def downgrade() -> None:
    op.execute("ALTER TABLE router.outbox DROP COLUMN trace")
