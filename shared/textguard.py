"""Find text PostgreSQL cannot store in a request (a NUL character, or half of a UTF-16
surrogate pair, which JSON's \\u escapes can smuggle in): the edge (``shared.service.Edge``)
refuses it with 422 before any handler runs, so nothing is stored or published, instead of a
500 from deep in a transaction or a message accepted at the edge and dead-lettered later.

Every body is checked, whatever its content type says: routes parse JSON when the type is any
spelling of JSON or is missing (FastAPI), and provider webhooks parse their raw body as JSON
whatever the type. So any body that parses as JSON is checked as JSON, and a form-encoded body
as a form. Other bodies (multipart, raw email) are decoded by the route that reads them, which
checks what it decoded (``services/ingest/channels/email.py``)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError
from starlette.types import Scope

FORM = "application/x-www-form-urlencoded"
# Where parsed JSON can get a NUL or a lone surrogate from: a raw NUL byte (json.loads is
# told strict=False), a \u0000 escape, a \uD800-\uDFFF escape, or raw UTF-8 bytes of a
# surrogate (json.loads decodes bytes with surrogatepass). A UTF-16 or UTF-32 body holds
# NUL bytes. A body without any of these is clean without being parsed; one with them (or
# with an escaped backslash before "u0000") is parsed and walked.
_MAYBE_UNSTORABLE = re.compile(rb"\x00|\\u0000|\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


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
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = unstorable_text(item, f"{path}[{i}]")
            if found:
                return found
    return None


def unstorable_model(model: BaseModel, path: str) -> str | None:
    """Where in ``model`` a string holds NUL or a lone surrogate, or None. Its JSON (made in
    C) shows a clean model at once: a NUL comes out as \\u0000 and a lone surrogate cannot be
    encoded; only then is the model walked to say where."""
    try:
        suspect = "\\u0000" in model.model_dump_json()
    except PydanticSerializationError:
        suspect = True
    return unstorable_text(model.model_dump(mode="json"), path) if suspect else None


def unstorable_body(body: bytes, content_type: str) -> str | None:
    """Where in a request body there is text PostgreSQL refuses, or None (also when the body
    is not one the guard can read: the route's own parsing answers that)."""
    if not body:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == FORM:
        found = _unstorable_form(body)
        if found:
            return found
    if not _MAYBE_UNSTORABLE.search(body):
        return None
    try:
        # strict=False: control characters inside strings are checked here rather than left
        # to a parser that may be more lenient than json's.
        return unstorable_text(json.loads(body, strict=False))
    except (ValueError, RecursionError):
        return None  # not JSON (or absurdly deep): the route's own parsing answers


def _unstorable_form(body: bytes) -> str | None:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeError:
        return "the form body is not valid UTF-8 (percent-decoded)"
    for name, value in pairs:
        found = unstorable_text(name, "body key") or unstorable_text(value, f"body.{name}")
        if found:
            return found
    return None


def unstorable_request_line(scope: Scope) -> str | None:
    """Where the query string, path or headers hold a NUL character, or None (HTTP servers
    refuse NUL in headers; an ASGI client need not)."""
    if b"%00" in scope.get("query_string", b""):
        return "the query string contains a NUL character"
    if "\x00" in scope.get("path", ""):
        return "the path contains a NUL character"
    for name, value in scope["headers"]:
        if b"\x00" in value:
            return f"the {name.decode('latin-1')} header contains a NUL character"
    return None
