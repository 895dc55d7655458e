"""The agent API's agent and queue routes: agents and their status, the long-poll of an
agent's assignments, heartbeats, and the lists of agents and queues."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.router import handlers, pages
from services.router.deps import UowDep, router_settings
from services.router.keys_api import AgentKeyedOut, IssueKey, first_key, took_effect
from services.router.pages import Cursor, MessageCount, PageLimit
from services.router.presence import Presence
from services.router.schemas import (
    AgentId,
    AgentIn,
    AgentProfileOut,
    AssignmentsOut,
    ConversationOut,
    HeartbeatOut,
    SkillQueueOut,
    StatusIn,
)
from services.router.store import RouterStore
from services.router.uow import reading
from services.router.wakeups import AgentWakeups
from shared.auth import DESK, OPS, Principal, PrincipalDep, agent_scope
from shared.events import AgentStatus
from shared.problems import NotFound

router = APIRouter(prefix="/v1")


async def _agent_out(store: RouterStore, agent_id: str) -> AgentProfileOut:
    agent = await store.agent(agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id!r} does not exist")
    return AgentProfileOut.of(agent)


@router.put("/agents/{agent_id}", response_model=AgentKeyedOut, tags=["agents"])
async def put_agent(
    agent_id: AgentId,
    body: AgentIn,
    principal: PrincipalDep,
    uow: UowDep,
    request: Request,
    issue_key: IssueKey = False,
) -> AgentProfileOut:
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


@router.put("/agents/{agent_id}/status", response_model=AgentProfileOut, tags=["agents"])
async def put_status(
    agent_id: AgentId, body: StatusIn, principal: PrincipalDep, uow: UowDep
) -> AgentProfileOut:
    """Set an agent online, away or offline (the agent itself, a desk for it, or ops)."""
    principal.require(OPS, agent_scope(agent_id), DESK)
    async with uow() as ctx:
        await handlers.set_status(
            ctx, agent_id, body.status, acted_by=principal.on_behalf(agent_id)
        )
        return await _agent_out(ctx.store, agent_id)


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
    count = messages or router_settings(request).conversation_messages
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
        presence_timeout_s=router_settings(request).presence_timeout,
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


@router.get("/agents", response_model=list[AgentProfileOut], tags=["agents"])
async def list_agents(
    principal: PrincipalDep,
    request: Request,
    response: Response,
    limit: PageLimit = None,
    cursor: Cursor = None,
) -> list[AgentProfileOut]:
    """Every agent with status and load, in id order (ops); a ``Link: <...>; rel="next"``
    header points to the next page."""
    principal.require(OPS)
    size = limit or router_settings(request).list_page_size
    (after,) = pages.decode(cursor, (str,)) if cursor is not None else ("",)
    async with reading(request.app.state.engine) as store:
        found = await store.agents(after=after, limit=size + 1)
    page = found[:size]
    pages.link_next(request, response, [page[-1].id] if len(found) > size else None, size)
    return [AgentProfileOut.of(a) for a in page]


@router.get("/queues", response_model=list[SkillQueueOut], tags=["queues"])
async def list_queues(
    principal: PrincipalDep,
    request: Request,
    response: Response,
    limit: PageLimit = None,
    cursor: Cursor = None,
) -> list[SkillQueueOut]:
    """Depth, oldest wait and priority mix of each (skill, language) queue (ops); a
    ``Link: <...>; rel="next"`` header points to the next page."""
    principal.require(OPS)
    size = limit or router_settings(request).list_page_size
    skill, language = pages.decode(cursor, (str, str)) if cursor is not None else ("", "")
    async with reading(request.app.state.engine) as store:
        found = await store.queue_stats(datetime.now(UTC), after=(skill, language), limit=size + 1)
    page = found[:size]
    last = [page[-1]["skill"], page[-1]["language"]] if len(found) > size else None
    pages.link_next(request, response, last, size)
    return [SkillQueueOut(**q) for q in page]
