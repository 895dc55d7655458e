"""API keys managed at run time: the ``auth`` schema, read by every service, written by the
router's key API (``/v1/keys``).

Only digests are stored. A rotation keeps the digest it replaced, valid until
``previous_valid_until`` (a grace period for the clients being switched over). Every change
of a row that matters for authentication takes a new ``change`` from a sequence: each service
compares ``count(*)`` and ``sum(change)`` every few seconds and reloads the live keys when
they moved. (A watermark on ``max(change)`` would miss a transaction that drew its number
before another one but committed after it; the sum moves whenever any row changes.)
``last_used_at`` is written in batches and never takes a new ``change``.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS auth")
    op.execute("CREATE SEQUENCE auth.api_key_changes")
    op.execute(
        """CREATE TABLE auth.api_keys (
            id                   uuid PRIMARY KEY,
            name                 text NOT NULL,
            scopes               text[] NOT NULL,
            sha256               text NOT NULL UNIQUE,
            previous_sha256      text UNIQUE,
            previous_valid_until timestamptz,
            created_at           timestamptz NOT NULL,
            rotated_at           timestamptz,
            expires_at           timestamptz,
            revoked_at           timestamptz,
            last_used_at         timestamptz,
            change               bigint NOT NULL DEFAULT nextval('auth.api_key_changes')
        )"""
    )
    # One live key per name: a name is what the rate limiter and the logs know a caller by.
    op.execute(
        "CREATE UNIQUE INDEX api_keys_live_name ON auth.api_keys (name) WHERE revoked_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE auth.api_keys")
    op.execute("DROP SEQUENCE auth.api_key_changes")
    op.execute("DROP SCHEMA auth")
