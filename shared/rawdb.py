"""Statements on asyncpg directly, on connections of the SQLAlchemy engine's pool.

The router's hot paths are short text statements. Through an ``AsyncSession`` each cost about
190 µs of CPU on this machine, and a session's begin and commit another 500 µs; on the asyncpg
connection underneath, 37 µs and 280 µs (docs/throughput.md). ``transaction`` and
``autocommit`` check a connection out of the engine's pool (the same pool, the same limits
and the same invalidation of broken connections), and ``Connection.execute`` runs the text
statements the stores write, with ``:name`` parameters, returning rows that read like
SQLAlchemy's (``row.column``, ``row._mapping``, ``row[0]``; ``first()``, ``one()``,
``scalar()``, ``scalar_one()``, ``rowcount``).

Errors are SQLAlchemy's: an asyncpg error is raised as the ``sqlalchemy.exc.DBAPIError`` the
session would have raised (so ``shared.db.is_transient_db_error`` and the 503 handler see the
same thing), and a connection found broken is invalidated in the pool. Engine listeners of
``before_cursor_execute`` see each statement with its positional parameters, as they would
through SQLAlchemy (tests/integration/test_query_plans.py checks the plans that way)."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, NoReturn
from weakref import WeakKeyDictionary

import asyncpg
from sqlalchemy import TextClause
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# SQLAlchemy's own pattern for a ``:name`` bind in text(): not after another colon (a ``::``
# cast), a word character or a backslash, and not followed by a colon.
_BIND = re.compile(r"(?<![:\w\x5c]):(\w+)(?!:)")
_STATUS_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+|MERGE) (\d+)")
PREPARED_PER_CONNECTION = 512  # the router has about a hundred distinct statements


@lru_cache(maxsize=1024)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with its ``:name`` binds as ``$n`` (a name used twice is one parameter), and
    the names in order."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${names.setdefault(match.group(1), len(names) + 1)}"

    return _BIND.sub(number, sql), tuple(names)


class Row:
    """One row: by column name as an attribute or a key, by position as an index."""

    __slots__ = ("_record",)

    def __init__(self, record: asyncpg.Record) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: int | str) -> Any:
        return self._record[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._record.values())

    def __len__(self) -> int:
        return len(self._record)

    def __repr__(self) -> str:
        return f"Row({dict(self._record.items())!r})"

    @property
    def _mapping(self) -> asyncpg.Record:
        return self._record


class Rows:
    """A statement's rows, read as a SQLAlchemy ``Result`` is."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, records: list[asyncpg.Record], status: str | None) -> None:
        self._rows = [Row(r) for r in records]
        counted = _STATUS_COUNT.match(status or "")
        self.rowcount = int(counted.group(1)) if counted else -1

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def all(self) -> list[Row]:
        return list(self._rows)

    def first(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Row:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def one_or_none(self) -> Row | None:
        return self.one() if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


# Prepared statements of each asyncpg connection, by SQL text, the least used dropped first.
_prepared: WeakKeyDictionary[asyncpg.Connection, OrderedDict[str, Any]] = WeakKeyDictionary()


class Connection:
    """A pooled connection's asyncpg connection, for text statements (``execute``)."""

    def __init__(
        self, connection: AsyncConnection, adapted: Any, driver: asyncpg.Connection
    ) -> None:
        self.connection = connection
        self.adapted = adapted  # SQLAlchemy's DB-API adapter around ``driver``
        self.driver = driver
        self._statements = _prepared.setdefault(driver, OrderedDict())
        sync = connection.sync_connection
        self._observed = sync is not None and bool(sync.dispatch.before_cursor_execute)

    async def execute(
        self, statement: str | TextClause, params: Mapping[str, Any] | None = None
    ) -> Rows:
        """Run ``statement`` (text with ``:name`` binds) with ``params``; its rows."""
        sql, names = positional(statement.text if isinstance(statement, TextClause) else statement)
        args = tuple((params or {})[name] for name in names)
        if self._observed:
            sync = self.connection.sync_connection
            assert sync is not None
            sync.dispatch.before_cursor_execute(sync, None, sql, args, None, False)
        try:
            prepared = await self._prepare(sql)
            records = await prepared.fetch(*args)
        except Exception as error:
            await self._raise_as_sqlalchemy(error, sql, args)
        return Rows(records, prepared.get_statusmsg())

    async def _prepare(self, sql: str) -> Any:
        cache = self._statements
        prepared = cache.get(sql)
        if prepared is None:
            prepared = await self.driver.prepare(sql)
            cache[sql] = prepared
            if len(cache) > PREPARED_PER_CONNECTION:
                cache.popitem(last=False)
        else:
            cache.move_to_end(sql)
        return prepared

    async def _raise_as_sqlalchemy(
        self, error: Exception, sql: str, args: tuple[Any, ...]
    ) -> NoReturn:
        """Raise ``error`` as SQLAlchemy's asyncpg dialect would, invalidating the pooled
        connection if the error says it is broken."""
        sync = self.connection.sync_connection
        assert sync is not None
        dialect = sync.dialect
        adapted = self.adapted
        if isinstance(error, asyncpg.InvalidCachedStatementError | asyncpg.InternalServerError):
            # DDL from elsewhere (a migration) made this connection's statements or types
            # stale: prepare afresh next time, as SQLAlchemy's dialect does.
            self._statements.clear()
            await self.driver.reload_schema_state()
        try:
            adapted._handle_exception(error)
        except Exception as translated:  # the DB-API error SQLAlchemy wraps
            dbapi_error: BaseException = translated
        else:  # pragma: no cover (it always raises)
            dbapi_error = error
        broken = dialect.is_disconnect(dbapi_error, adapted, None)  # type: ignore[arg-type]
        if broken and not self.connection.invalidated:
            _prepared.pop(self.driver, None)
            await self.connection.invalidate(error)
        if isinstance(dbapi_error, dialect.loaded_dbapi.Error):
            raise DBAPIError.instance(
                sql,
                args,
                dbapi_error,
                dialect.loaded_dbapi.Error,
                connection_invalidated=broken,
                dialect=dialect,
            ) from error
        raise error


@asynccontextmanager
async def _checked_out(engine: AsyncEngine) -> AsyncIterator[Connection]:
    async with engine.connect() as connection:
        fairy = await connection.get_raw_connection()
        driver = fairy.driver_connection
        assert isinstance(driver, asyncpg.Connection)
        yield Connection(connection, fairy.dbapi_connection, driver)


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Connection]:
    """A pooled connection in a transaction: committed when the block ends, rolled back if it
    raises. A connection whose transaction could not be ended is invalidated, never returned
    to the pool mid-transaction."""
    async with _checked_out(engine) as conn:
        try:
            begun = conn.driver.transaction()
            await begun.start()
        except Exception as error:
            await conn._raise_as_sqlalchemy(error, "BEGIN", ())
        try:
            yield conn
        except BaseException:
            await _roll_back(conn, begun)
            raise
        try:
            await begun.commit()
        except BaseException as error:
            await _roll_back(conn, begun)
            if isinstance(error, Exception):
                await conn._raise_as_sqlalchemy(error, "COMMIT", ())
            raise


async def _roll_back(conn: Connection, begun: Any) -> None:
    try:
        if not conn.driver.is_closed():
            await begun.rollback()
            return
    except BaseException:  # the error that got us here matters, not this one
        pass
    if not conn.connection.invalidated:
        await conn.connection.invalidate()


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[Connection]:
    """A pooled connection without a transaction: each statement commits on its own."""
    async with _checked_out(engine) as conn:
        yield conn
