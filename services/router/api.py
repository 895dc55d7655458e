"""The agent API's conversation routes (the agent and queue routes are ``agents_api.py``):
translate HTTP to handler calls inside a unit of work."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from services.router import handlers, pages
from services.router.context import Context
from services.router.deps import UowDep, router_settings
from services.router.idempotency import IdempotencyKey, once
from services.router.model import Conversation
from services.router.pages import MessageCount
from services.router.schemas import (
    AcceptIn,
    ConversationOut,
    CorrectionIn,
    MessagesOut,
    ReplyIn,
    ReplyOut,
    ResolveIn,
    TransferIn,
)
from services.router.store import RouterStore
from services.router.uow import reading
from shared.auth import DESK, OPS, Principal, PrincipalDep, agent_scope
from shared.problems import BadRequest, NotFound

router = APIRouter(prefix="/v1")


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
        count = messages or router_settings(request).conversation_messages
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
        count = messages or router_settings(request).conversation_messages
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
        count = limit or router_settings(request).conversation_messages
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
        resolved = await handlers.resolve(
            ctx, conversation_id=conversation_id, agent_id=agent_id, acted_by=acted_by
        )
        return await _conversation_out(request, ctx.store, conversation_id, resolved)

    return await once(
        uow, request, principal=principal, key=idempotency_key, body=body, status=200, act=act
    )


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
    request: Request,
    store: RouterStore,
    conversation_id: uuid.UUID,
    conv: Conversation | None = None,
) -> ConversationOut:
    """The conversation as an action (in its transaction) or a read left it (``conv``: as
    the action's last statement returned it, not read again)."""
    conv = conv or await store.conversation(conversation_id)
    if conv is None:
        raise NotFound(f"conversation {conversation_id} not found")
    found = await store.latest_messages(
        [conv.id], limit=router_settings(request).conversation_messages
    )
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
