"""Routing engine: overall caps, teams, offers, transfers, reopening, escalation.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE router.agents
    ADD COLUMN max_load integer CHECK (max_load IS NULL OR max_load >= 0),
    ADD COLUMN total_load integer NOT NULL DEFAULT 0 CHECK (total_load >= 0),
    ADD COLUMN team text,
    ADD COLUMN missed_offers integer NOT NULL DEFAULT 0;

ALTER TABLE router.conversations
    ADD COLUMN category text,
    ADD COLUMN min_level smallint NOT NULL DEFAULT 1,
    ADD COLUMN team text,
    ADD COLUMN offered_at timestamptz,
    ADD COLUMN accepted_at timestamptz,
    ADD COLUMN escalated_at timestamptz,
    ADD COLUMN excluded_agents text[] NOT NULL DEFAULT '{}',
    ADD COLUMN last_agent_id text,
    ADD COLUMN reopened integer NOT NULL DEFAULT 0;

CREATE INDEX conversations_recently_resolved
    ON router.conversations (conversation_key, resolved_at) WHERE state = 'resolved';
CREATE INDEX conversations_offers
    ON router.conversations (offered_at) WHERE state = 'assigned' AND accepted_at IS NULL
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";\n"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX router.conversations_offers")
    op.execute("DROP INDEX router.conversations_recently_resolved")
    op.execute(
        "ALTER TABLE router.conversations DROP COLUMN category, DROP COLUMN min_level, "
        "DROP COLUMN team, DROP COLUMN offered_at, DROP COLUMN accepted_at, "
        "DROP COLUMN escalated_at, DROP COLUMN excluded_agents, DROP COLUMN last_agent_id, "
        "DROP COLUMN reopened"
    )
    op.execute(
        "ALTER TABLE router.agents DROP COLUMN max_load, DROP COLUMN total_load, "
        "DROP COLUMN team, DROP COLUMN missed_offers"
    )
