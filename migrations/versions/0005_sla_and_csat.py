"""SLA policies, SLA crossings per conversation, CSAT.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = [
    """CREATE TABLE metrics.sla_policies (
        priority text NOT NULL,
        channel text NOT NULL,  -- '*' applies to every channel without its own policy
        first_response_target_s double precision NOT NULL CHECK (first_response_target_s > 0),
        resolution_target_s double precision NOT NULL CHECK (resolution_target_s > 0),
        PRIMARY KEY (priority, channel)
    )""",
    """ALTER TABLE metrics.conversations
        ADD COLUMN sla_at_risk_at timestamptz,
        ADD COLUMN sla_breached_at timestamptz""",
    """CREATE TABLE metrics.csat (
        conversation_id uuid PRIMARY KEY REFERENCES metrics.conversations (conversation_id),
        score smallint NOT NULL CHECK (score BETWEEN 1 AND 5),
        comment text,
        received_at timestamptz NOT NULL
    )""",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE metrics.csat")
    op.execute(
        "ALTER TABLE metrics.conversations DROP COLUMN sla_at_risk_at, DROP COLUMN sla_breached_at"
    )
    op.execute("DROP TABLE metrics.sla_policies")
