"""Metrics' own outbox and relay lease, for the SLA marks it publishes.

``sweep_sla`` published ``sla_at_risk``/``sla_breached`` from inside its transaction, so a mark
could leave for a transaction that rolled back. The sweep now writes its events here, in the
transaction that records the marks, and metrics' relay publishes them to the sla-events topic.
Both tables are shaped as the router's (``router.outbox``, 0001 and 0007;
``router.relay_lease``, 0012), so one relay serves both schemas.

Revision ID: 0021
Revises: 0020
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE metrics.outbox (
            id      bigserial PRIMARY KEY,
            topic   text NOT NULL,
            key     text NOT NULL,
            payload text NOT NULL,
            trace   text
        )"""
    )
    op.execute(
        """CREATE TABLE metrics.relay_lease (
            id         smallint PRIMARY KEY CHECK (id = 1),
            holder     text NOT NULL,
            expires_at timestamptz NOT NULL
        )"""
    )
    op.execute("INSERT INTO metrics.relay_lease VALUES (1, '', '-infinity')")


def downgrade() -> None:
    op.execute("DROP TABLE metrics.relay_lease")
    op.execute("DROP TABLE metrics.outbox")
