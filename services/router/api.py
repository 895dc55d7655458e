"""The agent API: translate HTTP to handler calls inside a unit of work."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from services.router import handlers
from services.router.schemas import (
    AcceptIn,
    AgentId,
    AgentIn,
    AgentOut,
    AssignmentsOut,
    ConversationOut,
    CorrectionIn,
    QueueOut,
    ReplyIn,
    ReplyOut,
    ResolveIn,
    StatusIn,
    TransferIn,
)
from services.router.store import RouterStore
from services.router.uow import UnitOfWork, reading
from services.router.wakeups import AgentWakeups
from shared.auth import OPS, PrincipalDep, agent_scope
from shared.problems import NotFound

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


@router.put("/agents/{agent_id}", response_model=AgentOut, tags=["agents"])
async def put_agent(
    agent_id: AgentId, body: AgentIn, principal: PrincipalDep, uow: UowDep
) -> AgentOut:
    """Create or update an agent (ops)."""
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
        return await _agent_out(ctx.store, agent_id)


@router.put("/agents/{agent_id}/status", response_model=AgentOut, tags=["agents"])
async def put_status(
    agent_id: AgentId, body: StatusIn, principal: PrincipalDep, uow: UowDep
) -> AgentOut:
    """Set an agent online, away or offline (the agent itself, or ops)."""
    principal.require(OPS, agent_scope(agent_id))
    async with uow() as ctx:
        await handlers.set_status(ctx, agent_id, body.status)
        return await _agent_out(ctx.store, agent_id)


@router.get("/agents/{agent_id}/assignments", response_model=AssignmentsOut, tags=["agents"])
async def get_assignments(
    agent_id: AgentId,
    principal: PrincipalDep,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for something new")] = 0,
    since: Annotated[int | None, Query(ge=0, description="cursor of the previous answer")] = None,
) -> AssignmentsOut:
    """The agent's open conversations with their messages, as soon as there is something new
    (or, without ``since``, as soon as there is anything); empty after ``wait`` seconds."""
    principal.require(agent_scope(agent_id), OPS)
    wakeups: AgentWakeups = request.app.state.wakeups
    recheck: float = request.app.state.settings.poll_recheck_s
    deadline = time.monotonic() + wait
    while True:
        woken = wakeups.event_for(agent_id)
        async with reading(request.app.state.sessions) as store:
            details = await store.agent_details(agent_id)
            if details is None:
                raise NotFound(f"agent {agent_id!r} does not exist")
            cursor = int(details["inbox_version"])
            news = cursor > since if since is not None else None
            if news is not False:
                convs = await store.open_conversations_of(agent_id)
                if news or convs:
                    messages = await store.messages_of([c.id for c in convs])
                    return AssignmentsOut(
                        agent_id=agent_id,
                        cursor=cursor,
                        conversations=[ConversationOut.of(c, messages[c.id]) for c in convs],
                    )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return AssignmentsOut(agent_id=agent_id, cursor=cursor, conversations=[])
        try:
            await asyncio.wait_for(woken.wait(), min(remaining, recheck))
        except TimeoutError:
            pass


@router.get(
    "/conversations/{conversation_id}", response_model=ConversationOut, tags=["conversations"]
)
async def get_conversation(
    conversation_id: uuid.UUID, principal: PrincipalDep, request: Request
) -> ConversationOut:
    """A conversation's state, classification (with the rules that fired), agent and messages."""
    async with reading(request.app.state.sessions) as store:
        conv = await store.conversation(conversation_id)
        visible = conv is not None and (
            principal.has(OPS)
            or (conv.agent_id is not None and principal.has(agent_scope(conv.agent_id)))
        )
        if conv is None or not visible:
            raise NotFound(f"conversation {conversation_id} not found")
        messages = await store.messages_of([conv.id])
        return ConversationOut.of(conv, messages[conv.id])


@router.post(
    "/conversations/{conversation_id}/replies",
    status_code=201,
    response_model=ReplyOut,
    tags=["conversations"],
)
async def post_reply(
    conversation_id: uuid.UUID, body: ReplyIn, principal: PrincipalDep, uow: UowDep
) -> ReplyOut:
    """An agent replies in its own conversation; the reply goes out on the customer's channel."""
    principal.require(agent_scope(body.agent_id))
    message_id = uuid.uuid4()
    async with uow() as ctx:
        await handlers.reply(
            ctx,
            conversation_id=conversation_id,
            agent_id=body.agent_id,
            text=body.text,
            message_id=message_id,
        )
    return ReplyOut(message_id=message_id)


@router.post(
    "/conversations/{conversation_id}/resolve",
    response_model=ConversationOut,
    tags=["conversations"],
)
async def post_resolve(
    conversation_id: uuid.UUID,
    body: ResolveIn,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
) -> ConversationOut:
    """An agent resolves its own conversation, freeing a slot for the queue."""
    principal.require(agent_scope(body.agent_id))
    async with uow() as ctx:
        await handlers.resolve(ctx, conversation_id=conversation_id, agent_id=body.agent_id)
    return await _conversation_out(request, conversation_id)


@router.get("/agents", response_model=list[AgentOut], tags=["agents"])
async def list_agents(principal: PrincipalDep, request: Request) -> list[AgentOut]:
    """Every agent with status and load (ops)."""
    principal.require(OPS)
    async with reading(request.app.state.sessions) as store:
        return [AgentOut.of(a) for a in await store.agents()]


@router.get("/queues", response_model=list[QueueOut], tags=["queues"])
async def list_queues(principal: PrincipalDep, request: Request) -> list[QueueOut]:
    """Depth, oldest wait and priority mix of each (skill, language) queue (ops)."""
    principal.require(OPS)
    async with reading(request.app.state.sessions) as store:
        return [QueueOut(**q) for q in await store.queue_stats(datetime.now(UTC))]


@router.post(
    "/conversations/{conversation_id}/accept",
    response_model=ConversationOut,
    tags=["conversations"],
)
async def post_accept(
    conversation_id: uuid.UUID,
    body: AcceptIn,
    principal: PrincipalDep,
    request: Request,
    uow: UowDep,
) -> ConversationOut:
    """The agent accepts an offered conversation (channels with an offer timeout)."""
    principal.require(agent_scope(body.agent_id))
    async with uow() as ctx:
        await handlers.accept(ctx, conversation_id=conversation_id, agent_id=body.agent_id)
    return await _conversation_out(request, conversation_id)


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
) -> ConversationOut:
    """Move the agent's conversation to another agent or to a skill's queue, with a reason."""
    principal.require(agent_scope(body.agent_id))
    async with uow() as ctx:
        await handlers.transfer(
            ctx,
            conversation_id=conversation_id,
            agent_id=body.agent_id,
            reason=body.reason,
            to_agent_id=body.to_agent_id,
            to_skill=body.to_skill,
        )
    return await _conversation_out(request, conversation_id)


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
) -> ConversationOut:
    """The agent corrects priority, skill or language; re-routes if it no longer fits."""
    principal.require(agent_scope(body.agent_id))
    async with uow() as ctx:
        await handlers.correct_classification(
            ctx,
            conversation_id=conversation_id,
            agent_id=body.agent_id,
            priority=body.priority,
            skill=body.skill,
            language=body.language,
        )
    return await _conversation_out(request, conversation_id)


async def _conversation_out(request: Request, conversation_id: uuid.UUID) -> ConversationOut:
    async with reading(request.app.state.sessions) as store:
        conv = await store.conversation(conversation_id)
        if conv is None:
            raise NotFound(f"conversation {conversation_id} not found")
        messages = await store.messages_of([conv.id])
        return ConversationOut.of(conv, messages[conv.id])


@router.get("/tickets/{ticket}", response_model=ConversationOut, tags=["conversations"])
async def get_ticket(
    ticket: Annotated[str, Path(pattern=r"^SB-[A-Z2-7]{4}-[A-Z2-7]{4}$")],
    principal: PrincipalDep,
    request: Request,
) -> ConversationOut:
    """The conversation of a web-form ticket number a customer quotes (ops)."""
    principal.require(OPS)
    async with reading(request.app.state.sessions) as store:
        conv = await store.latest_for_key(f"form:{ticket}")
    if conv is None:
        raise NotFound(f"ticket {ticket} not found")
    return await _conversation_out(request, conv.id)
