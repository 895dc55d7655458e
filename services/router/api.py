"""The agent API: translate HTTP to handler calls inside a unit of work."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.router import handlers, pages
from services.router.context import Context
from services.router.idempotency import IdempotencyKey, once
from services.router.keys_api import AgentKeyedOut, IssueKey, first_key, took_effect
from services.router.pages import Cursor, MessageCount, PageLimit
from services.router.presence import Presence
from services.router.rows import Conversation
from services.router.schemas import (
    AcceptIn,
    AgentId,
    AgentIn,
    AgentOut,
    AssignmentsOut,
    ConversationOut,
    CorrectionIn,
    HeartbeatOut,
    MessagesOut,
    QueueOut,
    ReplyIn,
    ReplyOut,
    ResolveIn,
    StatusIn,
    TransferIn,
)
from services.router.settings import RouterSettings
from services.router.store import RouterStore
from services.router.uow import UnitOfWork, reading
from services.router.wakeups import AgentWakeups
from shared.auth import DESK, OPS, Principal, PrincipalDep, agent_scope
from shared.events import AgentStatus
from shared.problems import BadRequest, NotFound

router = APIRouter(prefix="/v1")


async def _uow(request: Request) -> UnitOfWork:
    uow: UnitOfWork = request.app.state.uow
    return uow


UowDep = Annotated[UnitOfWork, Depends(_uow)]


async def _agent_out(store: RouterStore, agent_id: str) -> AgentOut:
    agent = await store.agent(agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id!r} does not exist")
    return AgentOut.of(agent)


@router.put("/agents/{agent_id}", response_model=AgentKeyedOut, tags=["agents"])
async def put_agent(
    agent_id: AgentId,
    body: AgentIn,
    principal: PrincipalDep,
    uow: UowDep,
    request: Request,
    issue_key: IssueKey = False,
) -> AgentOut:
    """Create or update an agent (ops); with ``issue_key=true`` also its first key."""
    principal.require(OPS)
    async with uow() as ctx:
        await handlers.upsert_agent(
            ctx,
            agent_id=agent_id,
            name=body.name,
            skills={s.value: level for s, level in body.skills.items()},
            languages=body.languages,
            capacity={c.value: n for c, n in body.capacity.items()},
            team=body.team,
            max_load=body.max_load,
        )
        agent = await _agent_out(ctx.store, agent_id)
        if issue_key:
            agent = await first_key(ctx, agent)
    if issue_key:
        took_effect(request)
    return agent


@router.put("/agents/{agent_id}/status", response_model=AgentOut, tags=["agents"])
async def put_status(
    agent_id: AgentId, body: StatusIn, principal: PrincipalDep, uow: UowDep
) -> AgentOut:
    """Set an agent online, away or offline (the agent itself, a desk for it, or ops)."""
    principal.require(OPS, agent_scope(agent_id), DESK)
    async with uow() as ctx:
        await handlers.set_status(
            ctx, agent_id, body.status, acted_by=principal.on_behalf(agent_id)
        )
        return await _agent_out(ctx.store, agent_id)


def _settings(request: Request) -> RouterSettings:
    settings: RouterSettings = request.app.state.settings
    return settings


@router.get("/agents/{agent_id}/assignments", response_model=AssignmentsOut, tags=["agents"])
async def get_assignments(
    agent_id: AgentId,
    principal: PrincipalDep,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for something new")] = 0,
    since: Annotated[int | None, Query(ge=0, description="cursor of the previous answer")] = None,
    messages: MessageCount = None,
) -> AssignmentsOut:
    """The agent's open conversations with their latest messages, as soon as there is
    something new (or, without ``since``, as soon as there is anything); empty after ``wait``
    seconds, or at once when a newer wait of the same agent goes past the cap."""
    principal.require(agent_scope(agent_id), DESK, OPS)
    count = messages or _settings(request).conversation_messages
    if wait == 0:
        inbox, answer = await _inbox(request, agent_id, since, count)
        _heard(request, principal, agent_id)
        return answer or _nothing(agent_id, inbox)
    wakeups: AgentWakeups = request.app.state.wakeups
    deadline = time.monotonic() + wait
    # Registered before the first check, so news that lands during it wakes this wait. While
    # waiting it holds no connection and queries nothing.
    with wakeups.waiting(agent_id) as waiter:
        inbox, answer = await _inbox(request, agent_id, since, count)
        _heard(request, principal, agent_id)
        while answer is None and not waiter.superseded:
            try:
                await asyncio.wait_for(waiter.woken.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
            if waiter.superseded:
                break
            waiter.woken.clear()  # before checking: news during the check wakes it again
            inbox, answer = await _inbox(request, agent_id, since, count)
    return answer or _nothing(agent_id, inbox)


def _nothing(agent_id: str, inbox: tuple[int, AgentStatus]) -> AssignmentsOut:
    """The answer with nothing new: the agent's cursor and status."""
    cursor, status = inbox
    return AssignmentsOut(agent_id=agent_id, cursor=cursor, status=status, conversations=[])


def _heard(request: Request, principal: Principal, agent_id: str) -> None:
    """The agent's frontend (its own credential, or a desk's) was heard from; ops reading an
    agent's assignments is not its frontend."""
    if principal.has(agent_scope(agent_id)) or principal.has(DESK):
        presence: Presence = request.app.state.presence
        presence.heard(agent_id)


@router.post("/agents/{agent_id}/heartbeat", response_model=HeartbeatOut, tags=["agents"])
async def post_heartbeat(
    agent_id: AgentId, principal: PrincipalDep, request: Request
) -> HeartbeatOut:
    """The agent's frontend is there (the agent itself, or a desk for it): with neither a
    long-poll nor a heartbeat for ``presence_timeout_s`` an agent online is set away. Answers
    the agent's status, which a frontend should show (away: set it online again)."""
    principal.require(agent_scope(agent_id), DESK)
    async with reading(request.app.state.engine) as store:
        details = await store.agent_details(agent_id)
    if details is None:
        raise NotFound(f"agent {agent_id!r} does not exist")
    _heard(request, principal, agent_id)
    return HeartbeatOut(
        agent_id=agent_id,
        status=details["status"],
        presence_timeout_s=_settings(request).presence_timeout,
    )


async def _inbox(
    request: Request, agent_id: str, since: int | None, count: int
) -> tuple[tuple[int, AgentStatus], AssignmentsOut | None]:
    """The agent's cursor and status, and its assignments if there is something to say since
    ``since`` (holding a connection only while it reads)."""
    async with reading(request.app.state.engine) as store:
        details = await store.agent_details(agent_id)
        if details is None:
            raise NotFound(f"agent {agent_id!r} does not exist")
        cursor = int(details["inbox_version"])
        status = AgentStatus(details["status"])
        news = cursor > since if since is not None else None
        if news is False:
            return (cursor, status), None
        convs = await store.open_conversations_of(agent_id)
        if not (news or convs):
            return (cursor, status), None
        found = await store.latest_messages([c.id for c in convs], limit=count)
        return (cursor, status), AssignmentsOut(
            agent_id=agent_id,
            cursor=cursor,
            status=status,
            conversations=[ConversationOut.of(c, found[c.id]) for c in convs],
        )


async def _visible(
    store: RouterStore, principal: Principal, conversation_id: uuid.UUID
) -> Conversation:
    """The conversation, if ops, a desk or its agent asks; else 404 (nothing leaks that it
    exists)."""
    return _shown(principal, await store.conversation(conversation_id), f"{conversation_id}")


def _shown(principal: Principal, conv: Conversation | None, what: str) -> Conversation:
    """``conv`` if there is one and ops, its agent or a desk (for its agent) asks; else 404
    naming ``what``."""
    visible = conv is not None and (
        principal.has(OPS)
        or (
            conv.agent_id is not None
            and (principal.has(agent_scope(conv.agent_id)) or principal.has(DESK))
        )
    )
    if conv is None or not visible:
        raise NotFound(f"conversation {what} not found")
    return conv


@router.get("/conversations", response_model=ConversationOut, tags=["conversations"])
async def find_conversation(
    principal: PrincipalDep,
    request: Request,
    key: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=1000,
            description="a conversation_key as ingest answers it (e.g. chat:visitor-1): the "
            "thread's open conversation, else the one resolved last",
        ),
    ] = None,
    message_id: Annotated[
        uuid.UUID | None,
        Query(description="a message_id as ingest answers it: the conversation holding it"),
    ] = None,
    messages: MessageCount = None,
) -> ConversationOut:
    """The conversation of exactly one of ``key`` and ``message_id`` (ops, or the
    conversation's agent; else 404, as for a message the router has not applied yet)."""
    if (key is None) == (message_id is None):
        raise BadRequest("give exactly one of key and message_id")
    async with reading(request.app.state.engine) as store:
        if key is not None:
            conv = _shown(principal, await store.latest_for_key(key), f"of key {key!r}")
        else:
            assert message_id is not None
            found = await store.conversation_of_message(message_id)
            conv = _shown(principal, found, f"of message {message_id}")
        count = messages or _settings(request).conversation_messages
        page = await store.latest_messages([conv.id], limit=count)
        return ConversationOut.of(conv, page[conv.id])


@router.get(
    "/conversations/{conversation_id}", response_model=ConversationOut, tags=["conversations"]
)
async def get_conversation(
    conversation_id: uuid.UUID,
    principal: PrincipalDep,
    request: Request,
    messages: MessageCount = None,
) -> ConversationOut:
    """A conversation's state, classification (with the rules that fired), agent, group chat
    and latest messages, each with the provider's references to its media and, for an edit,
    the message it edits (earlier ones: ``/messages?before=<earlier_messages>``)."""
    async with reading(request.app.state.engine) as store:
        conv = await _visible(store, principal, conversation_id)
        count = messages or _settings(request).conversation_messages
        found = await store.latest_messages([conv.id], limit=count)
        return ConversationOut.of(conv, found[conv.id])


@router.get(
    "/conversations/{conversation_id}/messages", response_model=MessagesOut, tags=["conversations"]
)
async def get_messages(
    conversation_id: uuid.UUID,
    principal: PrincipalDep,
    request: Request,
    before: Annotated[
        str | None, Query(max_length=100, description="earlier_messages of a previous answer")
    ] = None,
    limit: MessageCount = None,
) -> MessagesOut:
    """A conversation's messages before a cursor (without one, the latest), oldest first."""
    seq = pages.decode(before, (int,))[0] if before is not None else None
    async with reading(request.app.state.engine) as store:
        conv = await _visible(store, principal, conversation_id)
        count = limit or _settings(request).conversation_messages
        found = await store.latest_messages([conv.id], limit=count, before=seq)
        return MessagesOut.of(found[conv.id])


@router.post(
    "/conversations/{conversation_id}/replies",
    status_code=201,
    response_model=ReplyOut,
    tags=["conversations"],
)
async def post_reply(
    conversation_id: uuid.UUID,
    body: ReplyIn,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> ReplyOut | JSONResponse:
    """An agent replies in its own conversation; the reply goes out on the customer's channel."""
    agent_id, acted_by = principal.actor(body.agent_id)

    async def act(ctx: Context) -> ReplyOut:
        message_id = uuid.uuid4()
        await handlers.reply(
            ctx,
            conversation_id=conversation_id,
            agent_id=agent_id,
            text=body.text,
            message_id=message_id,
            acted_by=acted_by,
        )
        return ReplyOut(message_id=message_id)

    return await once(
        uow, request, principal=principal, key=idempotency_key, body=body, status=201, act=act
    )


@router.post(
    "/conversations/{conversation_id}/resolve",
    response_model=ConversationOut,
    tags=["conversations"],
)
async def post_resolve(
    conversation_id: uuid.UUID,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
    body: ResolveIn | None = None,
) -> ConversationOut | JSONResponse:
    """An agent resolves its own conversation, freeing a slot for the queue (no body needed
    with an agent's own credential)."""
    body = body or ResolveIn()
    agent_id, acted_by = principal.actor(body.agent_id)

    async def act(ctx: Context) -> ConversationOut:
        await handlers.resolve(
            ctx, conversation_id=conversation_id, agent_id=agent_id, acted_by=acted_by
        )
        return await _conversation_out(request, ctx.store, conversation_id)

    return await once(
        uow, request, principal=principal, key=idempotency_key, body=body, status=200, act=act
    )


@router.get("/agents", response_model=list[AgentOut], tags=["agents"])
async def list_agents(
    principal: PrincipalDep,
    request: Request,
    response: Response,
    limit: PageLimit = None,
    cursor: Cursor = None,
) -> list[AgentOut]:
    """Every agent with status and load, in id order (ops); a ``Link: <...>; rel="next"``
    header points to the next page."""
    principal.require(OPS)
    size = limit or _settings(request).list_page_size
    (after,) = pages.decode(cursor, (str,)) if cursor is not None else ("",)
    async with reading(request.app.state.engine) as store:
        found = await store.agents(after=after, limit=size + 1)
    page = found[:size]
    pages.link_next(request, response, [page[-1].id] if len(found) > size else None, size)
    return [AgentOut.of(a) for a in page]


@router.get("/queues", response_model=list[QueueOut], tags=["queues"])
async def list_queues(
    principal: PrincipalDep,
    request: Request,
    response: Response,
    limit: PageLimit = None,
    cursor: Cursor = None,
) -> list[QueueOut]:
    """Depth, oldest wait and priority mix of each (skill, language) queue (ops); a
    ``Link: <...>; rel="next"`` header points to the next page."""
    principal.require(OPS)
    size = limit or _settings(request).list_page_size
    skill, language = pages.decode(cursor, (str, str)) if cursor is not None else ("", "")
    async with reading(request.app.state.engine) as store:
        found = await store.queue_stats(datetime.now(UTC), after=(skill, language), limit=size + 1)
    page = found[:size]
    last = [page[-1]["skill"], page[-1]["language"]] if len(found) > size else None
    pages.link_next(request, response, last, size)
    return [QueueOut(**q) for q in page]


@router.post(
    "/conversations/{conversation_id}/accept",
    response_model=ConversationOut,
    tags=["conversations"],
)
async def post_accept(
    conversation_id: uuid.UUID,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
    body: AcceptIn | None = None,
) -> ConversationOut | JSONResponse:
    """The agent accepts an offered conversation (channels with an offer timeout; no body
    needed with an agent's own credential)."""
    body = body or AcceptIn()
    agent_id, acted_by = principal.actor(body.agent_id)

    async def act(ctx: Context) -> ConversationOut:
        await handlers.accept(
            ctx, conversation_id=conversation_id, agent_id=agent_id, acted_by=acted_by
        )
        return await _conversation_out(request, ctx.store, conversation_id)

    return await once(
        uow, request, principal=principal, key=idempotency_key, body=body, status=200, act=act
    )


@router.post(
    "/conversations/{conversation_id}/transfer",
    response_model=ConversationOut,
    tags=["conversations"],
)
async def post_transfer(
    conversation_id: uuid.UUID,
    body: TransferIn,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> ConversationOut | JSONResponse:
    """Move the agent's conversation to another agent or to a skill's queue, with a reason."""
    agent_id, acted_by = principal.actor(body.agent_id)

    async def act(ctx: Context) -> ConversationOut:
        await handlers.transfer(
            ctx,
            conversation_id=conversation_id,
            agent_id=agent_id,
            reason=body.reason,
            to_agent_id=body.to_agent_id,
            to_skill=body.to_skill,
            acted_by=acted_by,
        )
        return await _conversation_out(request, ctx.store, conversation_id)

    return await once(
        uow, request, principal=principal, key=idempotency_key, body=body, status=200, act=act
    )


@router.post(
    "/conversations/{conversation_id}/classification",
    response_model=ConversationOut,
    tags=["conversations"],
)
async def post_correction(
    conversation_id: uuid.UUID,
    body: CorrectionIn,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
    idempotency_key: IdempotencyKey = None,
) -> ConversationOut | JSONResponse:
    """The agent corrects priority, skill or language; re-routes if it no longer fits."""
    agent_id, acted_by = principal.actor(body.agent_id)

    async def act(ctx: Context) -> ConversationOut:
        await handlers.correct_classification(
            ctx,
            conversation_id=conversation_id,
            agent_id=agent_id,
            priority=body.priority,
            skill=body.skill,
            language=body.language,
            acted_by=acted_by,
        )
        return await _conversation_out(request, ctx.store, conversation_id)

    return await once(
        uow, request, principal=principal, key=idempotency_key, body=body, status=200, act=act
    )


async def _conversation_out(
    request: Request, store: RouterStore, conversation_id: uuid.UUID
) -> ConversationOut:
    """The conversation as an action (in its transaction) or a read left it."""
    conv = await store.conversation(conversation_id)
    if conv is None:
        raise NotFound(f"conversation {conversation_id} not found")
    found = await store.latest_messages([conv.id], limit=_settings(request).conversation_messages)
    return ConversationOut.of(conv, found[conv.id])


@router.get("/tickets/{ticket}", response_model=ConversationOut, tags=["conversations"])
async def get_ticket(
    ticket: Annotated[
        str,
        Path(
            pattern=r"^[Ss][Bb]-[A-Za-z2-7]{4}-[A-Za-z2-7]{4}$",
            description="SB-XXXX-XXXX, in any case",
        ),
    ],
    principal: PrincipalDep,
    request: Request,
) -> ConversationOut:
    """The conversation of a web-form ticket number a customer quotes (ops), in whatever
    case it is quoted."""
    principal.require(OPS)
    ticket = ticket.upper()  # numbers are issued upper-case (base32)
    async with reading(request.app.state.engine) as store:
        conv = await store.latest_for_key(f"form:{ticket}")
        if conv is None:
            raise NotFound(f"ticket {ticket} not found")
        return await _conversation_out(request, store, conv.id)
