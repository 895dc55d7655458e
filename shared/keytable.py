"""Keeps a process's KeyRing in step with the stored keys (``auth.api_keys``), so a key
created, rotated or revoked through the router's API is accepted or refused by every replica
of every service within ``keys_refresh_s``, without a restart.

Every ``keys_refresh_s`` the table's fingerprint is read (one row, from a table of one row
per key); the live keys are read again only when it moved, or when a key or a rotated-out
digest expired since. Requests never query: they look their key's digest up in the ring.
Their uses are collected as a set of key ids and written every ``keys_last_used_s``, in one
statement, skipping keys written less than that long ago."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from shared import keystore
from shared.auth import KeyRing, Principal
from shared.db import make_engine
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

# The first read of the table at start waits this long at most; the desk starts with the
# configured keys if the database does not answer, and takes the stored ones up later.
START_WAIT_S = 5.0


def principals(rows: list[keystore.KeyRow], now: datetime) -> dict[str, Principal]:
    """The callers of the live keys by digest, a rotated-out digest while its grace lasts."""
    out: dict[str, Principal] = {}
    for row in rows:
        who = Principal(row.name, frozenset(row.scopes), key_id=row.id)
        out[row.sha256] = who
        if row.previous_sha256 and row.previous_valid_until and row.previous_valid_until > now:
            out[row.previous_sha256] = who
    return out


def next_expiry(rows: list[keystore.KeyRow], now: datetime) -> datetime | None:
    """When the earliest of the keys (or rotated-out digests) still accepted stops being."""
    ends = [
        t
        for row in rows
        for t in (row.expires_at, row.previous_valid_until)
        if t is not None and t > now
    ]
    return min(ends, default=None)


class KeyTable:
    """The stored keys of one process: read into ``keyring``, uses written back."""

    def __init__(self, keyring: KeyRing, engine: AsyncEngine, settings: CommonSettings) -> None:
        self.keyring = keyring
        self.engine = engine
        self.refresh_s = settings.keys_refresh_s
        self.last_used_every = timedelta(seconds=settings.keys_last_used_s)
        self._seen: tuple[int, int] | None = None
        self._expiry: datetime | None = None
        self._woken = asyncio.Event()
        self._failing = False

    def wake(self) -> None:
        """Read the table now (this process changed it)."""
        self._woken.set()

    async def refresh(self, now: datetime | None = None) -> bool:
        """Read the live keys again if the table changed or one expired; whether it did."""
        now = now or datetime.now(UTC)
        async with self.engine.connect() as conn:
            seen = await keystore.fingerprint(conn)
            expired = self._expiry is not None and self._expiry <= now
            if seen == self._seen and not expired:
                return False
            rows = await keystore.live(conn, now)
        self.keyring.replace_stored(principals(rows, now))
        self._seen, self._expiry = seen, next_expiry(rows, now)
        return True

    async def write_uses(self, now: datetime | None = None) -> None:
        """Record the last use of the keys used since the last call."""
        used = self.keyring.take_used()
        if not used:
            return
        try:
            async with self.engine.begin() as conn:
                await keystore.touch(
                    conn,
                    sorted(used),
                    now=now or datetime.now(UTC),
                    older_than=self.last_used_every,
                )
        except BaseException:
            self.keyring.restore_used(used)  # tried again next time
            raise

    async def run(self) -> None:
        """Refresh every ``refresh_s`` (at once when woken); write uses every
        ``keys_last_used_s``. A database that does not answer leaves the keys as they were."""
        loop = asyncio.get_running_loop()
        uses_due = loop.time() + self.last_used_every.total_seconds()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.refresh_s)
            self._woken.clear()
            try:
                await self.refresh()
                if loop.time() >= uses_due:
                    uses_due = loop.time() + self.last_used_every.total_seconds()
                    await self.write_uses()
            except Exception:
                self._note_failure()
            else:
                if self._failing:
                    log.info("stored API keys read again")
                self._failing = False

    def _note_failure(self) -> None:
        # Once per outage: a database down for an hour would otherwise log 1,800 stacks.
        if not self._failing:
            log.warning("stored API keys not read; the last ones read stay", exc_info=True)
        self._failing = True


@asynccontextmanager
async def key_table_running(
    keyring: KeyRing, settings: CommonSettings
) -> AsyncIterator[KeyTable | None]:
    """A KeyTable reading the database of ``settings`` while the block runs (None with
    ``keys_refresh_s`` 0), its own engine of one connection, the last uses written at the
    end."""
    if not settings.keys_refresh_s:
        yield None
        return
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=1, jit=False)
    table = KeyTable(keyring, engine, settings)
    try:
        await asyncio.wait_for(table.refresh(), START_WAIT_S)
    except Exception:
        table._note_failure()
    task = asyncio.create_task(table.run(), name="key-table")
    try:
        yield table
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(table.write_uses(), START_WAIT_S)
        await engine.dispose()
