"""``Idempotency-Key`` on agent actions: a retry gets the first request's answer, and the
action is done once.

The key is claimed (per API key) in the action's own transaction and its answer stored there
too, so a committed action always has its answer and a rolled-back one leaves no key: a
failed request may be retried with the same key and is done then. A concurrent retry waits
for the first request's transaction. The same key with another request is refused (409).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.router.context import Context
from services.router.uow import UnitOfWork
from shared.auth import Principal
from shared.problems import Conflict

REPLAYED = "Idempotent-Replayed"
T = TypeVar("T", bound=BaseModel)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="a retry with the same key gets the first answer; the action is done once",
    ),
]


def fingerprint(request: Request, body: BaseModel) -> str:
    """A digest of what the request asks: method, path and parsed body."""
    asked = [request.method, request.url.path, body.model_dump(mode="json")]
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


async def once(
    uow: UnitOfWork,
    request: Request,
    *,
    principal: Principal,
    key: str | None,
    body: BaseModel,
    status: int,
    act: Callable[[Context], Awaitable[T]],
) -> T | JSONResponse:
    """Run ``act`` in one transaction, unless ``key`` was used before: then the answer the
    first request got (with an ``Idempotent-Replayed: true`` header)."""
    async with uow() as ctx:
        if key is not None:
            ttl = timedelta(seconds=request.app.state.settings.idempotency_ttl_s)
            asked = fingerprint(request, body)
            earlier = await ctx.store.claim_idempotency_key(
                principal.name, key, asked, now=ctx.now, expired=ctx.now - ttl
            )
            if earlier is not None:
                if earlier.fingerprint != asked:
                    raise Conflict(
                        f"Idempotency-Key {key!r} was used with a different request; "
                        "use a new key for a new request"
                    )
                return JSONResponse(
                    earlier.body, status_code=earlier.status, headers={REPLAYED: "true"}
                )
        answer = await act(ctx)
        if key is not None:
            await ctx.store.store_answer(
                principal.name, key, status, answer.model_dump(mode="json")
            )
    return answer
