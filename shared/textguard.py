"""Refuse JSON bodies holding text PostgreSQL cannot store (a NUL character, or half of a
UTF-16 surrogate pair, which JSON's \\u escapes can smuggle in): 422 before any handler runs,
so nothing is stored or published, instead of a 500 from deep in a transaction."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import problem_response


def unstorable_text(value: Any, path: str = "body") -> str | None:
    """Where in ``value`` a string holds NUL or a lone surrogate, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path} contains an unpaired UTF-16 surrogate"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unstorable_text(key, f"{path} key") or unstorable_text(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = unstorable_text(item, f"{path}[{i}]")
            if found:
                return found
    return None


class TextGuard:
    """ASGI middleware: buffers JSON request bodies (already size-limited outside) and checks
    them; query strings too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("query_string", b""):
            await self._refuse(scope, receive, send, "the query string contains a NUL character")
            return
        headers = dict(scope["headers"])
        if b"json" not in headers.get(b"content-type", b""):
            await self.app(scope, receive, send)
            return
        chunks = []
        try:
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except HTTPException as exc:  # the size limit, raised while reading
            response = problem_response(exc.status_code, str(exc.detail), str(exc.detail))
            await response(scope, receive, send)
            return
        body = b"".join(chunks)
        try:
            found = unstorable_text(json.loads(body))
        except (ValueError, RecursionError):
            found = None  # not JSON (or absurdly deep): the route's own parsing answers
        if found:
            await self._refuse(scope, receive, send, f"{found}, which cannot be stored")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
        response = problem_response(422, "Unprocessable Content", detail)
        await response(scope, receive, send)
