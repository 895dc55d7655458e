"""A local stand-in for the channels' providers: it checks what the real provider would check
(path, token, body shape) and records every call; it can be told to fail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from devtools.stack import free_port

TOKEN = "provider-token"


@dataclass
class Calls:
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # status codes to answer first

    def of(self, prefix: str) -> list[dict[str, Any]]:
        return [body for path, body in self.received if path.startswith(prefix)]


def standin_app(calls: Calls) -> FastAPI:
    app = FastAPI()

    async def record(path: str, request: Request, required: list[str]) -> JSONResponse:
        body = await request.json()
        if calls.fail_next:
            return JSONResponse({"error": "injected"}, status_code=calls.fail_next.pop(0))
        missing = [k for k in required if k not in body]
        if missing:
            return JSONResponse({"error": f"missing {missing}"}, status_code=400)
        calls.received.append((path, body))
        return JSONResponse({"ok": True})

    def bearer_ok(authorization: str | None) -> bool:
        return authorization == f"Bearer {TOKEN}"

    @app.post("/bot{token}/sendMessage")
    async def telegram(token: str, request: Request) -> JSONResponse:
        if token != TOKEN:
            return JSONResponse({"ok": False, "description": "Unauthorized"}, status_code=401)
        return await record("/telegram", request, ["chat_id", "text"])

    @app.post("/graph/{node}/messages")
    async def graph(
        node: str, request: Request, authorization: str | None = Header(None)
    ) -> JSONResponse:
        if not bearer_ok(authorization):
            return JSONResponse({"error": {"message": "Invalid OAuth"}}, status_code=401)
        body = await request.json()
        kind = "whatsapp" if body.get("messaging_product") == "whatsapp" else "messenger"
        required = ["to", "type", "text"] if kind == "whatsapp" else ["recipient", "message"]
        return await record(f"/{kind}/{node}", request, required)

    @app.post("/x/1.1/direct_messages/events/new.json")
    async def x(request: Request, authorization: str | None = Header(None)) -> JSONResponse:
        if not bearer_ok(authorization):
            return JSONResponse({"errors": [{"code": 89}]}, status_code=401)
        return await record("/x", request, ["event"])

    @app.post("/hooks/{name}")
    async def hook(
        name: str, request: Request, x_switchboard_signature: str | None = Header(None)
    ) -> JSONResponse:
        if not x_switchboard_signature:
            return JSONResponse({"error": "unsigned"}, status_code=401)
        return await record(f"/hook/{name}", request, ["conversation_key", "text"])

    return app


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@contextlib.asynccontextmanager
async def providers() -> AsyncIterator[tuple[Calls, Mailbox, dict[str, Any]]]:
    """Start the HTTP stand-in and an SMTP server on loopback; yield calls, mailbox, settings."""
    calls, mailbox = Calls(), Mailbox()
    port, smtp_port = free_port(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            standin_app(calls), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    while not server.started:  # noqa: ASYNC110 (uvicorn exposes no started event)
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    settings = {
        "telegram_bot_token": TOKEN,
        "telegram_api_base": base,
        "meta_access_token": TOKEN,
        "graph_api_base": f"{base}/graph",
        "x_access_token": TOKEN,
        "x_api_base": f"{base}/x",
        "chat_webhook_url": f"{base}/hooks/chat",
        "form_webhook_url": f"{base}/hooks/form",
        "webhook_signing_secret": "hook-secret",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_from": "support@exchange.example",
    }
    try:
        yield calls, mailbox, settings
    finally:
        smtp.stop()
        server.should_exit = True
        await task
