"""The outbox relay's lease: which relay publishes, until when.

A relay renews it while it works and reads the outbox in the same statement; it publishes
holding no connection and no lock (an advisory lock held for a transaction did both, for as
long as the broker took to answer). A relay that stops gives the lease up; one that dies
leaves it to expire.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE router.relay_lease (
            id         smallint PRIMARY KEY CHECK (id = 1),
            holder     text NOT NULL,
            expires_at timestamptz NOT NULL
        )"""
    )
    op.execute("INSERT INTO router.relay_lease VALUES (1, '', '-infinity')")


def downgrade() -> None:
    op.execute("DROP TABLE router.relay_lease")
