"""Idempotency keys of agent actions: the answer a key's first request got, for its retries.

Written in the same transaction as the action, so a committed action always has its answer
stored and an action rolled back leaves no key behind.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE router.idempotency_keys (
            principal   text NOT NULL,
            key         text NOT NULL,
            -- digest of the request (method, path, body): a key reused otherwise is refused
            fingerprint text NOT NULL,
            status      smallint,
            response    jsonb,
            created_at  timestamptz NOT NULL,
            PRIMARY KEY (principal, key)
        )"""
    )
    # Expired keys are deleted a few at a time, oldest first.
    op.execute("CREATE INDEX idempotency_keys_created ON router.idempotency_keys (created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE router.idempotency_keys")
