"""Paging of the agent API's lists: opaque cursors and the ``Link: <...>; rel="next"`` header.

A cursor is the key of the last item a page held (or, for messages, of the oldest one), as
base64url JSON: clients pass it back and never read it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import Query, Request, Response

from shared.problems import BadRequest

MAX_PAGE = 1000
MAX_MESSAGES = 500

PageLimit = Annotated[
    int | None, Query(ge=1, le=MAX_PAGE, description="items per page (default: a setting)")
]
Cursor = Annotated[
    str | None, Query(max_length=400, description="the cursor of the previous page's next link")
]
MessageCount = Annotated[
    int | None,
    Query(
        ge=1, le=MAX_MESSAGES, description="latest messages per conversation (default: a setting)"
    ),
]


def encode(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    """The key a cursor holds, if it is of ``shape`` (one type per element); else 400."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("the cursor is not one this API gave") from exc
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or not all(type(v) is t for v, t in zip(key, shape, strict=True))
    ):
        raise BadRequest("the cursor is not one this API gave")
    return key


def link_next(request: Request, response: Response, last: list[Any] | None, limit: int) -> None:
    """Point to the page after the one ending with the item of key ``last``, if any more
    (RFC 8288)."""
    if last is not None:
        url = request.url.include_query_params(cursor=encode(last), limit=limit)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
