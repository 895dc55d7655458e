"""Alembic environment: migrations own the ``router`` and ``metrics`` schemas."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from shared.db import make_engine
from shared.settings import CommonSettings


def _url() -> str:
    configured = context.config.attributes.get("database_url")
    return configured or CommonSettings().database_url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, version_table_schema="public")
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(_url(), pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
asyncio.run(_run_async())
