"""The bench's HTTP/1.1 client against a small local server that counts its connections."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from bench.http1 import (
    Client,
    ConnectError,
    ConnectionClosed,
    HTTPStatusError,
    RemoteProtocolError,
    Timeout,
)
from bench.trivial_app import app as trivial_app
from tests.conftest import eventually, serving


@dataclass
class Server:
    """Answers by path; ``connections`` accepted so far, ``peak`` requests in hand at once."""

    url: str = ""
    connections: int = 0
    in_hand: int = 0
    peak: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        answered = 0
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode()
                except asyncio.IncompleteReadError:
                    return
                request_line, *lines = head.split("\r\n")
                method, target, _ = request_line.split(" ")
                headers = dict(line.split(": ", 1) for line in lines if line)
                body = await reader.readexactly(int(headers.get("Content-Length", "0")))
                self.in_hand += 1
                self.peak = max(self.peak, self.in_hand)
                try:
                    if not await self.answer(writer, method, target, headers, body, answered):
                        return
                finally:
                    self.in_hand -= 1
                answered += 1
        finally:
            writer.close()

    async def answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        answered: int,
    ) -> bool:
        """Write the answer to one request; False to close the connection."""
        path = target.split("?")[0]
        if path == "/hang-up" or (path == "/once-per-connection" and answered):
            return False
        if path == "/garbage":
            writer.write(b"HTPT/1.1 two hundred\r\n\r\n")
            return True
        if path == "/slow":
            await asyncio.sleep(0.1)
        if path == "/sleep":
            await asyncio.sleep(2)
        status = 404 if path == "/missing" else 200
        content = json.dumps(
            {
                "method": method,
                "target": target,
                "headers": headers,
                "json": json.loads(body) if body else None,
            }
        ).encode()
        closing = path == "/close-after"
        head = [f"HTTP/1.1 {status} Whatever", "Content-Type: application/json"]
        head += [f"Content-Length: {len(content)}"] + (["Connection: close"] if closing else [])
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + content)
        await writer.drain()
        return not closing


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    listening = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    async with listening:
        yield state
        listening.close()
        for writer in state.writers:
            writer.close()


async def test_requests_one_after_another_reuse_one_connection(server: Server):
    async with Client() as http:
        for _ in range(5):
            assert (await http.get(f"{server.url}/echo")).status_code == 200
    assert server.connections == 1


async def test_concurrent_requests_open_no_more_connections_than_the_limit(server: Server):
    async with Client(max_connections=2) as http:
        answers = await asyncio.gather(*(http.get(f"{server.url}/slow") for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert server.connections == 2
    assert server.peak == 2


async def test_a_json_body_headers_and_parameters_reach_the_server_and_the_answer_parses(
    server: Server,
):
    async with Client(headers={"Authorization": "Bearer k"}) as http:
        answer = await http.post(
            f"{server.url}/echo", json={"text": "我的账户被盗了", "n": [1, 2]}, headers={"X-A": "b"}
        )
        polled = await http.get(f"{server.url}/echo", params={"wait": 10, "since": 42})
    seen = answer.json()
    assert (answer.status_code, seen["method"], seen["json"]) == (
        200,
        "POST",
        {"text": "我的账户被盗了", "n": [1, 2]},
    )
    assert seen["headers"]["Authorization"] == "Bearer k"
    assert seen["headers"]["X-A"] == "b"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert polled.json()["target"] == "/echo?wait=10&since=42"
    assert answer.headers["content-type"] == "application/json"


async def test_a_non_2xx_answer_is_returned_and_keeps_the_connection(server: Server):
    async with Client() as http:
        answer = await http.post(f"{server.url}/missing", json={})
        assert answer.status_code == 404
        assert answer.json()["method"] == "POST"
        with pytest.raises(HTTPStatusError, match=f"{server.url}/missing answered 404"):
            answer.raise_for_status()
        assert (await http.get(f"{server.url}/echo")).status_code == 200
    assert server.connections == 1


async def test_after_an_answer_with_connection_close_the_next_request_opens_a_new_one(
    server: Server,
):
    async with Client() as http:
        assert (await http.get(f"{server.url}/close-after")).status_code == 200
        assert (await http.get(f"{server.url}/echo")).status_code == 200
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_replaced(server: Server):
    async with Client() as http:
        assert (await http.get(f"{server.url}/echo")).status_code == 200
        for writer in server.writers:
            writer.close()
        kept = [c for pool in http._pools.values() for c in pool.idle]

        async def seen_closed() -> bool:
            return all(c.closed for c in kept)

        await eventually(seen_closed, what="the client saw the close")
        assert (await http.get(f"{server.url}/echo")).status_code == 200
    assert server.connections == 2


async def test_a_reused_connection_closed_before_any_answer_is_retried_on_a_new_one(
    server: Server,
):
    # The keep-alive race: the server closes an idle connection as the next request arrives.
    async with Client() as http:
        for _ in range(3):
            assert (await http.get(f"{server.url}/once-per-connection")).status_code == 200
    assert server.connections == 3


async def test_a_server_hanging_up_without_answering_fails_naming_the_url(server: Server):
    async with Client() as http:
        with pytest.raises(ConnectionClosed, match=f"POST {server.url}/hang-up: the server"):
            await http.post(f"{server.url}/hang-up", json={})
        assert (await http.get(f"{server.url}/echo")).status_code == 200


async def test_a_malformed_status_line_fails_naming_the_url(server: Server):
    async with Client() as http:
        with pytest.raises(RemoteProtocolError, match=f"GET {server.url}/garbage: malformed"):
            await http.get(f"{server.url}/garbage")


async def test_a_refused_connection_fails_naming_the_url():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with Client() as http:
        with pytest.raises(ConnectError, match=f"GET http://127.0.0.1:{port}/x: cannot connect"):
            await http.get(f"http://127.0.0.1:{port}/x")


async def test_a_slow_answer_times_out_and_its_connection_is_not_reused(server: Server):
    async with Client(timeout=0.2) as http:
        with pytest.raises(Timeout, match=f"GET {server.url}/sleep"):
            await http.get(f"{server.url}/sleep")
        assert (await http.get(f"{server.url}/echo")).status_code == 200
    assert server.connections == 2


async def test_uvicorn_answers_are_read_over_one_kept_connection():
    async with serving(trivial_app) as url, Client(max_connections=1) as http:
        answers = [await http.post(f"{url}/v1/messages", json={"i": i}) for i in range(20)]
        assert {(a.status_code, a.content) for a in answers} == {(202, b'{"status":"accepted"}')}
        assert sum(len(pool.open) for pool in http._pools.values()) == 1
