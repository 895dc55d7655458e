"""API keys with scopes: ``ingest`` (integrators), ``agent:<agent_id>`` (one agent), ``ops``.

Keys are random 32-byte tokens, so a plain SHA-256 digest is enough to store them (a slow
password hash protects low-entropy secrets, which these are not); only digests are configured.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from shared.problems import Forbidden, TooManyRequests, Unauthorized
from shared.ratelimit import RateLimiter, retry_after_header
from shared.settings import ApiKeyEntry

OPS = "ops"
INGEST = "ingest"


def agent_scope(agent_id: str) -> str:
    return f"agent:{agent_id}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(prefix: str = "sb") -> str:
    """A fresh random API key."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, *any_of: str) -> None:
        """Raise Forbidden unless the principal holds one of ``any_of``."""
        if not any(s in self.scopes for s in any_of):
            raise Forbidden(f"this key lacks the scope {' or '.join(any_of)}")


class KeyRing:
    """The configured keys, by digest."""

    def __init__(self, entries: list[ApiKeyEntry]) -> None:
        self._by_digest = {e.sha256: Principal(e.name, frozenset(e.scopes)) for e in entries}

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <key> header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <key>'")
        # Looked up by digest, not compared with every key: the table is keyed by SHA-256 of
        # the key, so a lookup's timing tells nothing about any key (only about digests,
        # which cannot be turned back into keys).
        principal = self._by_digest.get(hash_key(token.strip()))
        if principal is None:
            raise Unauthorized("unknown API key")
        return principal


async def current_principal(request: Request) -> Principal:
    """The caller, by its key; a key over its rate limit is answered 429. (async although it
    never awaits: FastAPI runs plain ``def`` dependencies in a thread pool, which cost a fifth
    of ingest's CPU per request.)"""
    keyring: KeyRing = request.app.state.keyring
    principal = keyring.authenticate(request.headers.get("authorization"))
    limiter: RateLimiter = request.app.state.key_limiter
    wait = limiter.acquire(principal.name, time.monotonic())
    if wait:
        raise TooManyRequests(
            f"API key {principal.name!r} is over its rate limit "
            f"({limiter.rate:g} requests per second); retry later",
            retry_after=retry_after_header(wait),
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
