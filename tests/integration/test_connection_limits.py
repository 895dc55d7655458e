"""Slow and idle clients cannot take a service down (issue 13, finding 2): each service runs
with shared.serving's configuration, which times out header and body reads and idle
keep-alives and caps the open connections, closing the connection idle longest past the cap."""

import asyncio
import contextlib
import resource
import uuid

import httpx
import uvicorn
from fastapi import FastAPI, Request

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.serving import raise_fd_limit, uvicorn_config
from shared.settings import CommonSettings
from tests.conftest import eventually

PARTIAL_HEADER = b"POST /v1/messages HTTP/1.1\r\nHost: ingest\r\n"


@contextlib.asynccontextmanager
async def served(app, settings):
    """``app`` on a free loopback port, configured as the services run; yields the URL and
    the uvicorn server."""
    server = uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=0))
    task = asyncio.create_task(server.serve())

    async def started():
        return server.started

    await eventually(started, what="uvicorn started")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:  # connections still open: stop without waiting for them
            server.force_exit = True
            await task


async def closed_by_server(reader, within):
    """Whether the server closed the connection (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def webhook_message():
    return {
        "channel": "chat",
        "channel_message_id": uuid.uuid4().hex,
        "conversation_ref": f"visit-{uuid.uuid4().hex[:8]}",
        "customer": {"id": "cust-1"},
        "text": "my withdrawal has not arrived",
    }


async def test_a_message_is_served_while_thousands_of_slow_connections_are_open(common, ids):
    raise_fd_limit()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    flood = min(2500, (soft - 600) // 2)  # both ends of every socket live in this process
    assert flood >= 1000, f"file-descriptor limit {soft} too low for the test"
    cap = flood // 2
    settings = IngestSettings(**common, header_timeout_s=3.0, max_connections=cap)
    async with served(create_app(settings), settings) as (url, server):
        port = int(url.rsplit(":", 1)[1])
        peak = 0

        async def sample():
            nonlocal peak
            while True:
                peak = max(peak, len(server.server_state.connections))
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        slow = []
        for i in range(flood):  # half say nothing, half start a request and stall
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if i % 2:
                writer.write(PARTIAL_HEADER)
            slow.append((reader, writer))
        for _, writer in slow[1::2]:  # a trickle of bytes does not reset the deadline
            with contextlib.suppress(ConnectionError):
                writer.write(b"X-Slow: 1\r\n")

        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            answer = await http.post("/v1/messages", json=webhook_message(), headers=ids.as_ingest)
            health = await http.get("/healthz")
        assert answer.status_code == 202, answer.text
        assert health.status_code == 200

        deadline = settings.header_timeout_s + 10
        closed = await asyncio.gather(*(closed_by_server(r, deadline) for r, _ in slow))
        sampler.cancel()
        for _, writer in slow:
            writer.close()
        assert all(closed), f"{closed.count(False)} of {flood} slow connections still open"
        # Connections being closed count until the loop's next turn: a little over the cap.
        assert peak <= cap + 64, f"{peak} connections open at once, cap {cap}"


def waiting_app():
    """A tiny app: an echo of the body, and a long-poll that waits before it answers."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/poll")
    async def poll(wait: float) -> dict[str, str]:
        await asyncio.sleep(wait)
        return {"status": "nothing new"}

    return app


QUICK = CommonSettings(header_timeout_s=0.5, body_timeout_s=0.5, keepalive_timeout_s=0.5)


async def test_a_long_poll_outlives_every_read_timeout():
    async with served(waiting_app(), QUICK) as (url, _), httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/poll", params={"wait": 2.0})
    assert answer.status_code == 200


async def test_a_slow_body_and_an_idle_keep_alive_are_closed():
    async with served(waiting_app(), QUICK) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        assert await closed_by_server(reader, 5)

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readexactly(len(b'{"bytes":2}'))
        # Kept alive for a next request sent at once, then closed once idle.
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await reader.readexactly(len(b'{"bytes":2}'))
        assert await closed_by_server(reader, 5)  # nothing more was sent: idle keep-alive

        # A keep-alive connection whose next request trickles in is held no longer than the
        # header timeout, although every byte arrives within the keep-alive timeout: the
        # request, complete after longer than that, is never answered.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /poll?wait=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        answered = bytearray()

        async def read_all() -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(4096):
                    answered.extend(chunk)

        reading = asyncio.create_task(read_all())
        with contextlib.suppress(ConnectionError):
            for byte in b"GET /poll?wait=0 HTTP/1.1\r\nHost: x\r\n\r\n":
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)
        await asyncio.wait_for(reading, 5)
        assert b"HTTP/1.1 200" not in answered
        writer.close()


async def test_past_the_cap_with_none_idle_a_new_request_is_answered_503():
    settings = QUICK.model_copy(update={"max_connections": 2})
    async with served(waiting_app(), settings) as (url, _):
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as a,
            httpx.AsyncClient(base_url=url, timeout=10) as b,
            httpx.AsyncClient(base_url=url, timeout=10) as c,
        ):
            waits = [asyncio.create_task(h.get("/poll", params={"wait": 1.5})) for h in (a, b)]
            await asyncio.sleep(0.5)  # both requests are read and waiting in the app
            shed = await c.get("/poll", params={"wait": 0})
            assert shed.status_code == 503
            assert [w.status_code for w in await asyncio.gather(*waits)] == [200, 200]


async def test_past_the_cap_the_connection_idle_longest_makes_room():
    settings = QUICK.model_copy(update={"max_connections": 2, "header_timeout_s": 30.0})
    async with served(waiting_app(), settings) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("/poll", params={"wait": 0})).status_code == 200
        assert await closed_by_server(idle[0][0], 2)  # the oldest went first
