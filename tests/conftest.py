"""The real broker and PostgreSQL, started once per session; each test gets a fresh database
(cloned from a migrated template), fresh topics and its own API keys."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.stack import Broker, Postgres, create_database, drop_database, migrate, unique_name
from devtools.topics import produce, read_topic  # noqa: F401 (used by tests)
from shared.auth import DESK, INGEST, OPS, agent_scope, hash_key, new_key
from shared.db import make_engine, make_sessionmaker
from shared.settings import ApiKeyEntry, Topics

T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``) the tests that start service processes or
    inject faults run one after another on one worker, as they load every core; the tests
    that run the apps in-process share the other worker(s)."""
    heavy = ("e2e", "faults", "fuzz")
    for item in items:
        if any(item.get_closest_marker(name) for name in heavy):
            item.add_marker(pytest.mark.xdist_group("processes"))


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    b = Broker().start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def template_db(pg: Postgres) -> Iterator[str]:
    name = unique_name("sb_template")
    asyncio.run(create_database(pg.url, name))
    migrate(pg.url_for(name))
    yield name
    asyncio.run(drop_database(pg.url, name))


@pytest.fixture
def database_url(pg: Postgres, template_db: str) -> Iterator[str]:
    name = unique_name("sb_test")
    asyncio.run(create_database(pg.url, name, template=template_db))
    yield pg.url_for(name)
    asyncio.run(drop_database(pg.url, name))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test's database, for reading what the services wrote."""
    engine = make_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def two_databases(pg: Postgres, template_db: str) -> AsyncIterator[list[Any]]:
    """Two fresh databases in the same migrated state, as session factories: to apply the same
    input two ways (one at a time, in batches) and compare what each leaves."""
    names = [unique_name("sb_twin") for _ in range(2)]
    for name in names:
        await create_database(pg.url, name, template=template_db)
    engines = [make_engine(pg.url_for(name), pool_size=2) for name in names]
    yield [make_sessionmaker(e) for e in engines]
    for engine in engines:
        await engine.dispose()
    for name in names:
        await drop_database(pg.url, name)


@dataclass
class Identities:
    """API keys of one test: an integrator, ops, an agent frontend's backend (desk), and
    agents with random ids."""

    ingest: str = field(default_factory=new_key)
    ops: str = field(default_factory=new_key)
    desk: str = field(default_factory=new_key)
    agents: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        run = uuid.uuid4().hex[:8]
        self.agents = {f"agent-{run}-{i}": new_key() for i in range(6)}

    @property
    def agent_ids(self) -> list[str]:
        return list(self.agents)

    def entries(self) -> list[ApiKeyEntry]:
        out = [
            ApiKeyEntry(name="ingest", sha256=hash_key(self.ingest), scopes=[INGEST]),
            ApiKeyEntry(name="ops", sha256=hash_key(self.ops), scopes=[OPS]),
            ApiKeyEntry(name="desk", sha256=hash_key(self.desk), scopes=[DESK]),
        ]
        out += [
            ApiKeyEntry(name=a, sha256=hash_key(k), scopes=[agent_scope(a)])
            for a, k in self.agents.items()
        ]
        return out

    @staticmethod
    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def as_agent(self, agent_id: str) -> dict[str, str]:
        return self.bearer(self.agents[agent_id])

    @property
    def as_ops(self) -> dict[str, str]:
        return self.bearer(self.ops)

    @property
    def as_desk(self) -> dict[str, str]:
        return self.bearer(self.desk)

    @property
    def as_ingest(self) -> dict[str, str]:
        return self.bearer(self.ingest)


@pytest.fixture
def ids() -> Identities:
    return Identities()


@pytest.fixture
def topics() -> Topics:
    return Topics(namespace=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def common(broker: Broker, database_url: str, topics: Topics, ids: Identities) -> dict[str, Any]:
    """Settings every service of this test shares."""
    run = uuid.uuid4().hex[:8]
    return {
        "kafka_bootstrap": broker.bootstrap,
        "database_url": database_url,
        "topics": topics,
        "api_keys": ids.entries(),
        "consumer_group": f"group-{run}",
        "kafka_session_timeout_ms": 3000,
        # Only the tests of replies going out need ingest's dispatcher (and its group join).
        "dispatcher_enabled": False,
    }


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (its consumers included) and give a client for its routes."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 15.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


@contextlib.asynccontextmanager
async def serving(app):
    """The app on a free loopback port, with its lifespan; yields the base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())

    async def started():
        return server.started

    await eventually(started, what="uvicorn started")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
