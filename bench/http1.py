"""A lean HTTP/1.1 client for the bench's load generator and simulated agents.

httpx cost the bench 3-4 ms of CPU a request, taken from the desk being measured. This client
does only what the bench asks: a request with headers and a JSON body, an answer framed by
Content-Length (or by the server closing), keep-alive connections pooled per origin up to a
limit, a timeout on each exchange. Plain ``http://`` only: no TLS, redirects, cookies,
compression or chunked answers (the services send none; one is refused by name)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from json import dumps, loads
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

MAX_HEAD = 64 * 1024


class HTTPError(Exception):
    """An exchange that went wrong; the message names the method and URL."""


class ConnectError(HTTPError):
    """The connection could not be opened."""


class Timeout(HTTPError):
    """No complete answer within the client's timeout."""


class ConnectionClosed(HTTPError):
    """The server closed the connection before its answer was complete."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # whether any byte of an answer had arrived


class RemoteProtocolError(HTTPError):
    """The server answered something that is not HTTP/1.x as this client reads it."""


class HTTPStatusError(HTTPError):
    """``raise_for_status`` on a 4xx or 5xx answer."""


@dataclass(slots=True)
class Response:
    url: str
    status_code: int
    headers: dict[str, str]  # names lower-cased
    content: bytes

    def json(self) -> Any:
        return loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise HTTPStatusError(f"{self.url} answered {self.status_code}: {self.content[:200]!r}")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request is written whole, its answer parsed as it arrives
    (one request at a time; no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.answer: asyncio.Future[Response] | None = None
        self.where = ""  # "METHOD URL" of the request in flight, for error messages
        self.buffer = bytearray()
        self.received = False
        self.status = 0
        self.headers: dict[str, str] | None = None  # None until the head is complete
        self.length = -1  # the body's length; -1: until the server closes
        self.no_body = False  # a HEAD request's answer has none whatever its headers say

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self.answer
        if answer is None or answer.done():
            return
        if self.headers is not None and self.length == -1:  # framed by the close
            answer.set_result(self._response(bytes(self.buffer)))
        else:
            why = f": {exc}" if exc else ""
            answer.set_exception(
                ConnectionClosed(
                    f"{self.where}: the server closed the connection{why}",
                    answered=self.received,
                )
            )

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None or answer.done():
            self.reusable = False  # bytes no request asked for
            return
        self.received = True
        self.buffer += data
        try:
            self._parse()
        except RemoteProtocolError as exc:
            answer.set_exception(exc)
            self.close()

    def send(self, request: bytes, where: str, no_body: bool) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.where, self.received, self.headers, self.no_body = where, False, None, no_body
        self.buffer.clear()
        self.transport.write(request)
        return self.answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        if self.headers is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    raise RemoteProtocolError(f"{self.where}: an answer's head over {MAX_HEAD} B")
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            self._read_head(head)
            if self.headers is None:  # an informational answer (1xx): the real one follows
                self._parse()
                return
        if 0 <= self.length <= len(self.buffer):
            if len(self.buffer) > self.length:
                self.reusable = False  # more than was framed: the connection is out of step
            assert self.answer is not None
            self.answer.set_result(self._response(bytes(self.buffer[: self.length])))

    def _read_head(self, head: str) -> None:
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
            raise RemoteProtocolError(f"{self.where}: malformed status line {status_line[:100]!r}")
        headers = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise RemoteProtocolError(f"{self.where}: malformed header line {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        status = int(code)
        if status < 200:
            return
        if "chunked" in headers.get("transfer-encoding", ""):
            raise RemoteProtocolError(f"{self.where}: a chunked answer (not supported)")
        connection = headers.get("connection", "").lower()
        if connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive"):
            self.reusable = False
        if self.no_body or status in (204, 304):
            self.length = 0
        elif "content-length" in headers:
            try:
                self.length = int(headers["content-length"])
            except ValueError:
                raise RemoteProtocolError(
                    f"{self.where}: Content-Length {headers['content-length'][:40]!r}"
                ) from None
        else:
            self.length, self.reusable = -1, False
        self.status, self.headers = status, headers

    def _response(self, content: bytes) -> Response:
        assert self.headers is not None
        return Response(self.where.partition(" ")[2], self.status, self.headers, content)


class _Pool:
    """Keep-alive connections to one origin, at most ``max_connections`` of them in use."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(max_connections)
        self.idle: list[_Connection] = []  # the last returned first: likeliest still open
        self.open: set[_Connection] = set()

    async def connect(self, where: str) -> tuple[_Connection, bool]:
        """An idle connection (and True), or a new one (and False)."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection, True
            self.open.discard(connection)
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Connection, self.host, self.port
            )
        except OSError as exc:
            raise ConnectError(f"{where}: cannot connect: {exc}") from exc
        self.open.add(connection)
        return connection, False

    def put_back(self, connection: _Connection) -> None:
        if connection.reusable and not connection.closed:
            self.idle.append(connection)
        else:
            self.drop(connection)

    def drop(self, connection: _Connection) -> None:
        connection.close()
        self.open.discard(connection)

    def close(self) -> None:
        for connection in self.open:
            connection.close()
        self.open.clear()
        self.idle.clear()


class Client:
    """Requests over pooled keep-alive connections: at most ``max_connections`` to each origin
    in use (more requests wait for one, untimed: an open-loop generator's backlog shows as
    latency), ``timeout`` seconds for connecting and each exchange. Use with ``async with``."""

    def __init__(
        self,
        *,
        max_connections: int = 10,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._pools: dict[tuple[str, int], _Pool] = {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return await self.request("GET", url, params=params, headers=headers)

    async def post(
        self, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        return await self.request("POST", url, json=json, headers=headers)

    async def put(
        self, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        return await self.request("PUT", url, json=json, headers=headers)

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """``method`` on ``url`` with ``json`` as its body (none if None); the whole answer."""
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http:// URL: {url}")
        port = parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        body = None if json is None else dumps(json, separators=(",", ":")).encode()
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in (self.headers | dict(headers or {})).items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        pool = self._pools.get((parts.hostname, port))
        if pool is None:
            pool = self._pools[(parts.hostname, port)] = _Pool(
                parts.hostname, port, self.max_connections
            )
        where = f"{method} {url}"
        async with pool.slots:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(pool, request, where, method == "HEAD")
            except TimeoutError:
                raise Timeout(f"{where}: no complete answer within {self.timeout} s") from None

    async def _exchange(self, pool: _Pool, request: bytes, where: str, no_body: bool) -> Response:
        while True:
            connection, reused = await pool.connect(where)
            try:
                response = await connection.send(request, where, no_body)
            except ConnectionClosed as exc:
                pool.drop(connection)
                # Again on another connection if a reused one closed before any answer: the
                # server closes idle connections (keepalive_timeout_s) and may do so as we send.
                if reused and not exc.answered:
                    continue
                raise
            except BaseException:  # timed out, cancelled, a malformed answer: out of step
                pool.drop(connection)
                raise
            pool.put_back(connection)
            return response
