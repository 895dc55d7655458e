"""Delivery status of agents' replies.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE router.messages ADD COLUMN delivery_status text "
        "CHECK (delivery_status IN ('sent', 'failed')), ADD COLUMN delivery_detail text"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE router.messages DROP COLUMN delivery_status, DROP COLUMN delivery_detail"
    )
