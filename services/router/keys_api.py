"""The key API (ops): create, list, rotate and revoke API keys at run time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.router import keys, pages
from services.router.context import Context
from services.router.pages import Cursor, PageLimit
from services.router.schemas import AgentProfileOut
from services.router.settings import RouterSettings
from services.router.uow import UnitOfWork, reading
from shared import keystore
from shared.auth import OPS, PrincipalDep, agent_scope, is_known_scope
from shared.keystore import KeyRow
from shared.keytable import KeyTable
from shared.problems import BadRequest

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def _known(scope: str) -> str:
    if not is_known_scope(scope):
        raise ValueError(f"unknown scope {scope!r}: use ops, ingest, desk or agent:<id>")
    return scope


Scope = Annotated[str, Field(max_length=110), AfterValidator(_known)]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:@-]+$")
    scopes: list[Scope] = Field(min_length=1, max_length=20)
    expires_at: AwareDatetime | None = Field(
        default=None, description="when it stops working; none: when revoked"
    )
    expires_in_s: int | None = Field(
        default=None, gt=0, le=10 * 365 * 86_400, description="or: this many seconds from now"
    )


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_s: int = Field(
        default=0, ge=0, le=7 * 86_400, description="how long the replaced secret still works"
    )


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    rotated_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    previous_valid_until: datetime | None = Field(
        description="until when the secret replaced by the last rotation works"
    )
    last_used_at: datetime | None = Field(
        description="recorded at most once a minute (SWITCHBOARD_KEYS_LAST_USED_S)"
    )

    @classmethod
    def of(cls, row: KeyRow, now: datetime) -> KeyOut:
        expired = row.expires_at is not None and row.expires_at <= now
        return cls(
            id=row.id,
            name=row.name,
            scopes=list(row.scopes),
            status="revoked" if row.revoked_at else "expired" if expired else "active",
            created_at=row.created_at,
            rotated_at=row.rotated_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            previous_valid_until=row.previous_valid_until,
            last_used_at=row.last_used_at,
        )


class IssuedKeyOut(KeyOut):
    key: str = Field(description="the key, in clear: shown this once, never stored")

    @classmethod
    def issued(cls, issued: keys.Issued, now: datetime) -> IssuedKeyOut:
        return cls(**KeyOut.of(issued.row, now).model_dump(), key=issued.key)


class AgentKeyedOut(AgentProfileOut):
    key: IssuedKeyOut | None = Field(
        default=None,
        description="with ?issue_key=true: the agent's first key, named agent:<id>, of scope "
        "agent:<id>, shown this once",
    )


IssueKey = Annotated[
    bool,
    Query(
        description="also issue the agent's first key (409, and no change, if a live key is "
        "already named agent:<id>: rotate that one)"
    ),
]


async def first_key(ctx: Context, agent: AgentProfileOut) -> AgentKeyedOut:
    """``agent`` with its first key, issued in the transaction that created it."""
    scope = agent_scope(agent.id)
    issued = await keys.issue(ctx.store.db, name=scope, scopes=[scope], now=ctx.now)
    return AgentKeyedOut(**agent.model_dump(), key=IssuedKeyOut.issued(issued, ctx.now))


async def _uow(request: Request) -> UnitOfWork:
    uow: UnitOfWork = request.app.state.uow
    return uow


UowDep = Annotated[UnitOfWork, Depends(_uow)]


def took_effect(request: Request) -> None:
    """Have this process take a key change up now (the others do within seconds)."""
    table: KeyTable | None = request.app.state.key_table
    if table is not None:
        table.wake()


@router.post("", status_code=201, response_model=IssuedKeyOut)
async def create_key(
    body: KeyIn, principal: PrincipalDep, request: Request, uow: UowDep
) -> IssuedKeyOut:
    """A new key with its scopes (ops), optionally expiring; answered once, in clear."""
    principal.require(OPS)
    async with uow() as ctx:
        expires_at = body.expires_at
        if body.expires_in_s is not None:
            expires_at = ctx.now + timedelta(seconds=body.expires_in_s)
        issued = await keys.issue(
            ctx.store.db,
            name=body.name,
            scopes=list(dict.fromkeys(body.scopes)),
            now=ctx.now,
            expires_at=expires_at,
        )
    took_effect(request)
    return IssuedKeyOut.issued(issued, ctx.now)


@router.get("", response_model=list[KeyOut])
async def list_keys(
    principal: PrincipalDep,
    request: Request,
    response: Response,
    revoked: Annotated[bool, Query(description="include revoked keys")] = False,
    limit: PageLimit = None,
    cursor: Cursor = None,
) -> list[KeyOut]:
    """The stored keys by name, with status and last use (ops); never a key or a digest.
    Keys configured in SWITCHBOARD_API_KEYS are not listed."""
    principal.require(OPS)
    settings: RouterSettings = request.app.state.settings
    size = limit or settings.list_page_size
    after = None
    if cursor is not None:
        name, key_id = pages.decode(cursor, (str, str))
        try:
            after = (name, uuid.UUID(key_id))
        except ValueError as exc:
            raise BadRequest("the cursor is not one this API gave") from exc
    async with reading(request.app.state.engine) as store:
        found = await keystore.listed(store.db, revoked=revoked, after=after, limit=size + 1)
    page = found[:size]
    last = [page[-1].name, str(page[-1].id)] if len(found) > size else None
    pages.link_next(request, response, last, size)
    now = datetime.now(UTC)
    return [KeyOut.of(row, now) for row in page]


@router.post("/{key_id}/rotate", response_model=IssuedKeyOut)
async def rotate_key(
    key_id: uuid.UUID,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
    body: RotateIn | None = None,
) -> IssuedKeyOut:
    """A new secret for the key (ops), answered once, in clear; the replaced one keeps
    working for ``grace_s`` (none by default)."""
    principal.require(OPS)
    grace = timedelta(seconds=body.grace_s if body else 0)
    async with uow() as ctx:
        issued = await keys.rotate(ctx.store.db, key_id, now=ctx.now, grace=grace)
    took_effect(request)
    return IssuedKeyOut.issued(issued, ctx.now)


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(
    key_id: uuid.UUID, principal: PrincipalDep, request: Request, uow: UowDep
) -> KeyOut:
    """Revoke the key (ops): refused by every service within seconds; kept, as revoked."""
    principal.require(OPS)
    async with uow() as ctx:
        row = await keys.revoke(ctx.store.db, key_id, now=ctx.now)
    took_effect(request)
    return KeyOut.of(row, ctx.now)
