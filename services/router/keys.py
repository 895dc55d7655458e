"""API keys managed at run time: issue, rotate, revoke. A key is shown once, in clear, when
issued or rotated; only its digest is stored (shared/keystore.py). Every service takes a
change up within ``keys_refresh_s`` (shared/keytable.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import keystore
from shared.auth import hash_key, new_key
from shared.problems import BadRequest, Conflict, NotFound


@dataclass(frozen=True)
class Issued:
    row: keystore.KeyRow
    key: str  # in clear: answered once, never stored


async def issue(
    db: keystore.Db,
    *,
    name: str,
    scopes: list[str],
    now: datetime,
    expires_at: datetime | None = None,
) -> Issued:
    """A new key named ``name`` with ``scopes``; Conflict if a live key has the name."""
    if expires_at is not None and expires_at <= now:
        raise BadRequest("expires_at must be in the future")
    key = new_key()
    row = await keystore.insert(
        db, name=name, scopes=scopes, sha256=hash_key(key), now=now, expires_at=expires_at
    )
    if row is None:
        raise Conflict(f"a live key is already named {name!r}: rotate or revoke it")
    return Issued(row, key)


async def rotate(db: keystore.Db, key_id: uuid.UUID, *, now: datetime, grace: timedelta) -> Issued:
    """A new secret for a live key; the old one still works for ``grace``."""
    key = new_key()
    row = await keystore.rotate(db, key_id, sha256=hash_key(key), now=now, grace=grace)
    if row is None:
        raise NotFound(f"no live key {key_id}")
    return Issued(row, key)


async def revoke(db: keystore.Db, key_id: uuid.UUID, *, now: datetime) -> keystore.KeyRow:
    """Stop accepting a key (and the secret its last rotation replaced)."""
    row = await keystore.revoke(db, key_id, now=now)
    if row is None:
        raise NotFound(f"no live key {key_id}")
    return row
