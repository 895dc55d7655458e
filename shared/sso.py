"""Single sign-on: OIDC JWT bearer tokens from the company's identity provider.

PyJWT checks the token (signature, expiry, not-before, issuer, audience); this module only
fetches the provider's JWKS (asynchronously: PyJWKClient would block the event loop) and turns
claims into a Principal. A token signed by a key the JWKS did not hold makes it read again
(a key rotation), at most every ``oidc_jwks_min_refresh_s``; it is read again anyway after
``oidc_jwks_cache_s``. A token once checked is remembered by digest until it expires, so a
frontend's polls cost a digest and a look-up, as an API key does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt

from shared.auth import DESK, OPS, Principal, agent_scope, hash_key
from shared.problems import ServiceUnavailable, Unauthorized
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

# Tokens remembered after their check; past this many, the expired ones are dropped first.
MAX_REMEMBERED = 20_000


def claim(claims: dict[str, Any], path: str) -> Any:
    """The claim at ``path``, dotted for nested objects (``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def principal_of(claims: dict[str, Any], settings: CommonSettings) -> Principal:
    """The caller a checked token names: the agent of the agent claim, ops or desk if the role
    claim holds the ops or the desk role."""
    agent = claim(claims, settings.oidc_agent_claim)
    roles = claim(claims, settings.oidc_role_claim)
    if isinstance(roles, str):
        roles = roles.split()
    scopes = set()
    if isinstance(agent, str) and agent:
        scopes.add(agent_scope(agent))
    if isinstance(roles, list) and settings.oidc_ops_role in roles:
        scopes.add(OPS)
    if isinstance(roles, list) and settings.oidc_desk_role in roles:
        scopes.add(DESK)
    who = agent if isinstance(agent, str) and agent else claims.get("sub", "?")
    return Principal(f"sso:{who}", frozenset(scopes))


class SsoVerifier:
    """Checks a provider's tokens against its JWKS, fetched with ``http``."""

    def __init__(self, settings: CommonSettings, http: httpx.AsyncClient) -> None:
        assert settings.oidc_jwks_url and settings.oidc_issuer and settings.oidc_audience
        self.settings = settings
        self.http = http
        self.jwks_url = settings.oidc_jwks_url
        self._jwks: dict[str, dict[str, Any]] = {}  # raw JWKs by kid ("" for a lone key)
        self._keys: dict[tuple[str, str], jwt.PyJWK] = {}  # by kid and algorithm
        self._fetched_at = -float("inf")
        self._fetching = asyncio.Lock()
        self._checked: dict[str, tuple[Principal, float]] = {}

    @staticmethod
    def looks_like_token(token: str) -> bool:
        """Whether a bearer credential has a JWT's shape (an API key has none)."""
        return token.count(".") == 2

    async def principal(self, token: str) -> Principal:
        """The caller of a valid token; else Unauthorized."""
        digest = hash_key(token)
        known = self._checked.get(digest)
        now = time.time()
        if known is not None and known[1] > now:
            return known[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token refused: {exc}") from exc
        alg = header.get("alg")
        if alg not in self.settings.oidc_algorithms:
            raise Unauthorized(f"token refused: algorithm {alg!r} is not accepted")
        key = await self._key(str(header.get("kid") or ""), alg)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.settings.oidc_audience,
                issuer=self.settings.oidc_issuer,
                leeway=self.settings.oidc_leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token refused: {exc}") from exc
        principal = principal_of(claims, self.settings)
        self._remember(digest, principal, float(claims["exp"]) + self.settings.oidc_leeway_s)
        return principal

    def _remember(self, digest: str, principal: Principal, until: float) -> None:
        if len(self._checked) >= MAX_REMEMBERED:
            now = time.time()
            self._checked = {d: v for d, v in self._checked.items() if v[1] > now}
            if len(self._checked) >= MAX_REMEMBERED:
                self._checked.clear()
        self._checked[digest] = (principal, until)

    async def _key(self, kid: str, alg: str) -> jwt.PyJWK:
        """The JWKS key ``kid`` for ``alg``, reading the JWKS again if it is stale or lacks
        the key (a rotation) and may be read again."""
        age = time.monotonic() - self._fetched_at
        lacking = self._raw(kid) is None
        if age > self.settings.oidc_jwks_cache_s or (
            lacking and age >= self.settings.oidc_jwks_min_refresh_s
        ):
            await self._fetch(since=self._fetched_at)
        raw = self._raw(kid)
        if raw is None:
            if not self._jwks:
                raise ServiceUnavailable("the identity provider's keys could not be read")
            raise Unauthorized("token refused: signed by a key the identity provider lacks")
        if raw.get("alg") not in (None, alg):
            raise Unauthorized(f"token refused: its key is for {raw['alg']}, not {alg}")
        found = self._keys.get((kid, alg))
        if found is None:
            try:
                found = self._keys[(kid, alg)] = jwt.PyJWK(raw, algorithm=alg)
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"token refused: {exc}") from exc
        return found

    def _raw(self, kid: str) -> dict[str, Any] | None:
        if not kid and len(self._jwks) == 1:  # a token without kid, a JWKS of one key
            return next(iter(self._jwks.values()))
        return self._jwks.get(kid)

    async def _fetch(self, *, since: float) -> None:
        """Read the JWKS (once for every request waiting on it); on failure keep the last."""
        async with self._fetching:
            if self._fetched_at != since:
                return  # another request read it meanwhile
            try:
                answer = await self.http.get(self.jwks_url)
                answer.raise_for_status()
                keys = answer.json()["keys"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                log.warning("JWKS not read from %s", self.jwks_url, exc_info=True)
                self._fetched_at = time.monotonic()  # not again before the min refresh
                return
            self._jwks = {
                str(k.get("kid") or ""): k
                for k in keys
                if isinstance(k, dict) and k.get("kty") != "oct" and k.get("use", "sig") == "sig"
            }
            self._keys = {}
            self._fetched_at = time.monotonic()


@asynccontextmanager
async def sso_running(settings: CommonSettings) -> AsyncIterator[SsoVerifier | None]:
    """A verifier with its HTTP client while the block runs (None without single sign-on)."""
    if not settings.sso_enabled:
        yield None
        return
    async with httpx.AsyncClient(timeout=5.0, follow_redirects=True) as http:
        yield SsoVerifier(settings, http)
