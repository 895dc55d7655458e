"""Measures stored with each conversation's facts, so reports sort ready floats.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MEASURES = {
    "first_response_s": "first_response_at - first_message_at",
    "resolution_s": "resolved_at - opened_at",
    "queue_wait_s": "first_assigned_at - opened_at",
}


def upgrade() -> None:
    for name, expr in MEASURES.items():
        op.execute(
            f"ALTER TABLE metrics.conversations ADD COLUMN {name} double precision "
            # Not GREATEST(x, 0): it ignores NULL, and a missing time must stay missing.
            f"GENERATED ALWAYS AS (CASE WHEN date_part('epoch', {expr}) < 0 THEN 0 "
            f"ELSE date_part('epoch', {expr}) END) STORED"
        )


def downgrade() -> None:
    for name in MEASURES:
        op.execute(f"ALTER TABLE metrics.conversations DROP COLUMN {name}")
