"""Callers and their scopes: ``ingest`` (integrators), ``agent:<agent_id>`` (one agent),
``desk`` (an agent frontend's backend, acting for any agent it names), ``ops``. A caller
shows an API key or, with single sign-on configured, an OIDC token.

Keys are random 32-byte tokens, so a plain SHA-256 digest is enough to store them (a slow
password hash protects low-entropy secrets, which these are not); only digests are held: those
configured in ``SWITCHBOARD_API_KEYS`` and those of the ``auth.api_keys`` table, which
shared/keytable.py keeps in step. A request costs a digest and a dict look-up either way.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from shared.problems import Forbidden, TooManyRequests, Unauthorized, Unprocessable
from shared.ratelimit import RateLimiter, retry_after_header
from shared.settings import ApiKeyEntry

if TYPE_CHECKING:
    from shared.sso import SsoVerifier

OPS = "ops"
INGEST = "ingest"
DESK = "desk"
AGENT_PREFIX = "agent:"


def agent_scope(agent_id: str) -> str:
    return f"{AGENT_PREFIX}{agent_id}"


def is_known_scope(scope: str) -> bool:
    """Whether a key may be given ``scope``: ops, ingest, desk or agent:<id>."""
    return scope in (OPS, INGEST, DESK) or (
        scope.startswith(AGENT_PREFIX) and len(scope) > len(AGENT_PREFIX)
    )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(prefix: str = "sb") -> str:
    """A fresh random API key."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    # The stored key's id (auth.api_keys), whose use is recorded; None for other callers.
    key_id: uuid.UUID | None = None

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, *any_of: str) -> None:
        """Raise Forbidden unless the principal holds one of ``any_of``."""
        if not any(s in self.scopes for s in any_of):
            raise Forbidden(f"this key lacks the scope {' or '.join(any_of)}")

    def own_agents(self) -> list[str]:
        """The agents this credential is (its ``agent:<id>`` scopes), in id order."""
        return sorted(s[len(AGENT_PREFIX) :] for s in self.scopes if s.startswith(AGENT_PREFIX))

    def on_behalf(self, agent_id: str) -> str | None:
        """Who acts for ``agent_id`` when this credential acts: None when it is the agent's
        own, else its name (a desk or ops credential), for the event to record."""
        return None if self.has(agent_scope(agent_id)) else self.name

    def actor(self, named: str | None) -> tuple[str, str | None]:
        """The agent an action in an agent's name is done as, and who acts for it (None: the
        agent itself): the credential's own agent, or with ``desk`` the agent ``named`` in
        the request. A name that is not the credential's is refused (403); a credential that
        does not say which agent, without a name, is 422."""
        own = self.own_agents()
        if named is None:
            if len(own) == 1:
                return own[0], None
            if len(own) > 1:
                raise Unprocessable(
                    f"this credential is agents {', '.join(own)}: say which in agent_id"
                )
            if self.has(DESK):
                raise Unprocessable("a desk credential acts for the agent named in agent_id")
            raise Forbidden("this key lacks the scope agent:<id> or desk")
        if named in own:
            return named, None
        if self.has(DESK):
            return named, self.name
        if own:
            raise Forbidden(
                f"agent_id {named!r} is not this credential's agent ({', '.join(own)}); "
                "omit agent_id, or act for other agents with a desk credential"
            )
        raise Forbidden(f"this key lacks the scope {agent_scope(named)} or {DESK}")


class KeyRing:
    """The keys a process accepts, by digest: the configured ones, and the stored ones that
    shared/keytable.py hands over whenever the table changes. Stored keys whose use was seen
    since the last ``take_used`` are remembered as a set of ids (no clock, no write)."""

    def __init__(self, entries: list[ApiKeyEntry]) -> None:
        self._configured = {e.sha256: Principal(e.name, frozenset(e.scopes)) for e in entries}
        self._by_digest = dict(self._configured)
        self._used: set[uuid.UUID] = set()

    def replace_stored(self, by_digest: dict[str, Principal]) -> None:
        """Accept exactly these stored keys (with the configured ones, which win a clash)."""
        self._by_digest = {**by_digest, **self._configured}

    def take_used(self) -> set[uuid.UUID]:
        """The stored keys used since the last call."""
        used, self._used = self._used, set()
        return used

    def restore_used(self, used: set[uuid.UUID]) -> None:
        """Give back uses ``take_used`` gave that could not be recorded."""
        self._used |= used

    def lookup(self, token: str) -> Principal | None:
        """The caller a key belongs to, if it is one."""
        # Looked up by digest, not compared with every key: the table is keyed by SHA-256 of
        # the key, so a lookup's timing tells nothing about any key (only about digests,
        # which cannot be turned back into keys).
        principal = self._by_digest.get(hash_key(token))
        if principal is not None and principal.key_id is not None:
            self._used.add(principal.key_id)
        return principal

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an ``Authorization`` header with an API key; else Unauthorized."""
        principal = self.lookup(bearer_token(authorization))
        if principal is None:
            raise Unauthorized("unknown API key")
        return principal


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; else Unauthorized."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <key> header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization header must be 'Bearer <key>'")
    return token


async def current_principal(request: Request) -> Principal:
    """The caller, by its key or single sign-on token; a caller over its rate limit is
    answered 429. (async, although a key never awaits: FastAPI runs plain ``def``
    dependencies in a thread pool, which cost a fifth of ingest's CPU per request.)"""
    keyring: KeyRing = request.app.state.keyring
    token = bearer_token(request.headers.get("authorization"))
    principal = keyring.lookup(token)
    if principal is None:
        sso: SsoVerifier | None = request.app.state.sso
        if sso is None or not sso.looks_like_token(token):
            raise Unauthorized("unknown API key")
        principal = await sso.principal(token)
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
