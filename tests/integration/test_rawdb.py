"""shared/rawdb.py against the real PostgreSQL: statements on the pooled asyncpg connection
behave as they did through SQLAlchemy (rows, transactions, errors, broken connections)."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError, IntegrityError, NoResultFound

from shared import rawdb
from shared.db import is_transient_db_error, make_engine


@pytest.fixture
async def engine(database_url):
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    async with rawdb.transaction(engine) as db:
        await db.execute("CREATE TABLE IF NOT EXISTS raw_t (id uuid PRIMARY KEY, n int NOT NULL)")
    yield engine
    await engine.dispose()


@given(st.lists(st.sampled_from(["a", "b", "c1"]), min_size=1, max_size=6))
def test_named_binds_become_positional_and_a_repeated_name_is_one_parameter(names):
    sql = " + ".join(f"CAST(:{n} AS int)" for n in names) + " AS x, '{}'::jsonb, E'\\\\:no'"
    converted, order = rawdb.positional(sql)
    assert list(order) == list(dict.fromkeys(names))
    for i, name in enumerate(order, start=1):
        assert f":{name} " not in converted and f"${i}" in converted
    assert "'{}'::jsonb" in converted and ":no" in converted


async def test_rows_read_like_sqlalchemys_and_a_block_commits(engine):
    first, second = uuid.uuid4(), uuid.uuid4()
    async with rawdb.transaction(engine) as db:
        inserted = await db.execute(
            "INSERT INTO raw_t (id, n) VALUES (:a, 1), (:b, :n)", {"a": first, "b": second, "n": 2}
        )
        assert inserted.rowcount == 2
    async with rawdb.autocommit(engine) as db:
        rows = await db.execute(
            "SELECT id, n FROM raw_t WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY n",
            {"ids": [first, second]},
        )
        a, b = rows.all()
        assert (a.id, a[1], a._mapping["n"], dict(b._mapping)) == (
            first,
            1,
            1,
            {"id": second, "n": 2},
        )
        one = await db.execute("SELECT n FROM raw_t WHERE id = :id", {"id": first})
        assert one.scalar_one() == 1
        none = await db.execute("SELECT n FROM raw_t WHERE id = :id", {"id": uuid.uuid4()})
        assert none.first() is None and none.scalar() is None
        with pytest.raises(NoResultFound):
            none.one()
        updated = await db.execute("UPDATE raw_t SET n = n + 1 WHERE n > 100")
        assert updated.rowcount == 0


async def test_a_block_that_raises_leaves_nothing_and_its_connection_serves_again(engine):
    kept = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with rawdb.transaction(engine) as db:
            await db.execute("INSERT INTO raw_t (id, n) VALUES (:id, 5)", {"id": kept})
            raise RuntimeError("changed my mind")
    async with rawdb.autocommit(engine) as db:  # the pool's only connection, not left in a tx
        found = await db.execute("SELECT count(*) FROM raw_t WHERE id = :id", {"id": kept})
        assert found.scalar() == 0
        assert not db.driver.is_in_transaction()  # autocommit: no transaction left open


async def test_errors_are_sqlalchemys_and_a_broken_connection_is_replaced(engine):
    same = uuid.uuid4()
    with pytest.raises(IntegrityError) as refused:
        async with rawdb.transaction(engine) as db:
            await db.execute("INSERT INTO raw_t (id, n) VALUES (:id, 1), (:id, 2)", {"id": same})
    assert refused.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    assert not is_transient_db_error(refused.value)

    async with rawdb.autocommit(engine) as db:
        pid = (await db.execute("SELECT pg_backend_pid()")).scalar()
    async with make_engine(str(engine.url), pool_size=1).connect() as other:
        from sqlalchemy import text

        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(DBAPIError) as broken:
        async with rawdb.transaction(engine) as db:
            await db.execute("SELECT 1")
    assert broken.value.connection_invalidated and is_transient_db_error(broken.value)
    async with rawdb.autocommit(engine) as db:  # a new connection in the pool's one place
        assert (await db.execute("SELECT pg_backend_pid()")).scalar() != pid


async def test_after_ddl_elsewhere_a_stale_statement_fails_once_then_is_prepared_afresh(engine):
    async with rawdb.transaction(engine) as db:
        await db.execute("CREATE TABLE raw_ddl (id int)")
        await db.execute("INSERT INTO raw_ddl VALUES (1)")
    async with rawdb.autocommit(engine) as db:  # prepared on the pool's one connection
        assert (await db.execute("SELECT * FROM raw_ddl")).one()[0] == 1
    async with make_engine(str(engine.url), pool_size=1).connect() as other:
        from sqlalchemy import text

        await other.execute(text("ALTER TABLE raw_ddl ADD COLUMN note text"))
        await other.commit()
    with pytest.raises(DBAPIError):  # the cached plan's result type changed
        async with rawdb.autocommit(engine) as db:
            await db.execute("SELECT * FROM raw_ddl")
    async with rawdb.autocommit(engine) as db:
        assert tuple((await db.execute("SELECT * FROM raw_ddl")).one()) == (1, None)
