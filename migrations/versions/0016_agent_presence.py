"""Presence that follows the agent's frontend: ``router.agents.last_seen_at``, when the agent's
frontend was last heard from (a long-poll, a heartbeat, going online), on the database's
clock. The router's sweep sets away any agent online whose frontend has not been heard from
for ``SWITCHBOARD_PRESENCE_TIMEOUT_S``, after a restart too.

Agents existing before this revision count as heard from when it runs: their frontends have
the timeout to be heard from before they are set away.

No index: the sweep reads the desk's staff, not its history, and an index on a column written
every few seconds per agent would make each of those writes a non-HOT update.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE router.agents ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now()"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE router.agents DROP COLUMN last_seen_at")
