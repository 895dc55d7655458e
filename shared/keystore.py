"""The SQL of API keys managed at run time (schema ``auth``, migration 0014). Every service
reads it (shared/keytable.py); the router's key API writes it. Nothing here commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared import rawdb

Db = AsyncSession | AsyncConnection | rawdb.Connection

_COLUMNS = (
    "id, name, scopes, sha256, previous_sha256, previous_valid_until, created_at, rotated_at,"
    " expires_at, revoked_at, last_used_at"
)


@dataclass(frozen=True)
class KeyRow:
    """A stored key: its digests, never the key."""

    id: uuid.UUID
    name: str
    scopes: tuple[str, ...]
    sha256: str
    previous_sha256: str | None
    previous_valid_until: datetime | None
    created_at: datetime
    rotated_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> KeyRow:
        return cls(**{**row._mapping, "scopes": tuple(row.scopes)})


async def _rows(db: Db, sql: str, **params: Any) -> list[KeyRow]:
    return [KeyRow.of(r) for r in await db.execute(text(sql), params)]


async def _row(db: Db, sql: str, **params: Any) -> KeyRow | None:
    found = await _rows(db, sql, **params)
    return found[0] if found else None


async def fingerprint(db: Db) -> tuple[int, int]:
    """What changes whenever a key is created, rotated or revoked (migration 0014 says why
    not a watermark)."""
    row = (
        await db.execute(text("SELECT count(*), coalesce(sum(change), 0) FROM auth.api_keys"))
    ).one()
    return int(row[0]), int(row[1])


async def live(db: Db, now: datetime) -> list[KeyRow]:
    """Keys neither revoked nor expired at ``now``."""
    return await _rows(
        db,
        f"SELECT {_COLUMNS} FROM auth.api_keys"
        " WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)",
        now=now,
    )


async def insert(
    db: Db,
    *,
    name: str,
    scopes: list[str],
    sha256: str,
    now: datetime,
    expires_at: datetime | None,
) -> KeyRow | None:
    """A new key; None if a live key already has the name."""
    return await _row(
        db,
        "INSERT INTO auth.api_keys (id, name, scopes, sha256, created_at, expires_at)"
        " VALUES (:id, :name, :scopes, :sha256, :now, :expires_at)"
        f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        id=uuid.uuid4(),
        name=name,
        scopes=scopes,
        sha256=sha256,
        now=now,
        expires_at=expires_at,
    )


async def listed(
    db: Db, *, revoked: bool, after: tuple[str, uuid.UUID] | None, limit: int
) -> list[KeyRow]:
    """Keys in (name, id) order after ``after``; revoked ones only if ``revoked``."""
    name, key_id = after or ("", uuid.UUID(int=0))
    return await _rows(
        db,
        f"SELECT {_COLUMNS} FROM auth.api_keys"
        " WHERE (name, id) > (:name, :id) AND (:revoked OR revoked_at IS NULL)"
        " ORDER BY name, id LIMIT :limit",
        name=name,
        id=key_id,
        revoked=revoked,
        limit=limit,
    )


async def rotate(
    db: Db, key_id: uuid.UUID, *, sha256: str, now: datetime, grace: timedelta
) -> KeyRow | None:
    """Give a live key a new digest; the old one works for ``grace`` more (none if zero)."""
    return await _row(
        db,
        "UPDATE auth.api_keys SET"
        " previous_sha256 = CASE WHEN :keep THEN sha256 END,"
        " previous_valid_until = CASE WHEN :keep THEN CAST(:until AS timestamptz) END,"
        " sha256 = :sha256, rotated_at = :now, change = nextval('auth.api_key_changes')"
        " WHERE id = :id AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)"
        f" RETURNING {_COLUMNS}",
        id=key_id,
        keep=grace > timedelta(0),
        until=now + grace,
        sha256=sha256,
        now=now,
    )


async def revoke(db: Db, key_id: uuid.UUID, *, now: datetime) -> KeyRow | None:
    """Revoke a key (and the digest a rotation kept); None if there is no such live key."""
    return await _row(
        db,
        "UPDATE auth.api_keys SET revoked_at = :now, change = nextval('auth.api_key_changes')"
        f" WHERE id = :id AND revoked_at IS NULL RETURNING {_COLUMNS}",
        id=key_id,
        now=now,
    )


async def touch(db: Db, ids: list[uuid.UUID], *, now: datetime, older_than: timedelta) -> None:
    """Record that the keys ``ids`` were used by ``now``; rows recorded within
    ``older_than`` are left as they are, so a busy key costs a write per interval at most."""
    await db.execute(
        text(
            "UPDATE auth.api_keys SET last_used_at = :now WHERE id = ANY(:ids)"
            " AND (last_used_at IS NULL OR last_used_at < :stale)"
        ),
        {"ids": ids, "now": now, "stale": now - older_than},
    )
