"""Assignment mechanics shared by the use cases (``handlers.py``) and the sweeps
(``sweeps.py``): what a conversation needs, giving it to the best agent with a slot, putting it
back in the queue, and filling a freed agent's slots from the queue."""

from __future__ import annotations

from services.router.context import Context
from services.router.model import Conversation
from services.router.routing import events
from services.router.routing.queue import QueuedConversation, next_for_agent
from services.router.routing.select import Need, need_for, rank_candidates, reach
from shared.events import AgentStatus
from shared.problems import Conflict
from shared.tracing import tracer

# How many queued conversations of each priority one pull looks at (and locks) at a time.
QUEUE_WINDOW = 25
# How many of the best eligible agents one read brings; the next ones are read only if every
# one of these lost its last slot to a concurrent claim.
CANDIDATES_AT_A_TIME = 8


def need_of(ctx: Context, conv: Conversation) -> Need:
    """What the conversation needs of its agent; escalation widens level and team."""
    return need_for(conv, ctx.rules)


def as_queued(ctx: Context, conv: Conversation) -> QueuedConversation:
    assert conv.queued_at is not None
    return QueuedConversation(conv.id, conv.priority, conv.queued_at, need_of(ctx, conv))


async def try_assign(ctx: Context, conv: Conversation) -> bool:
    """Give a queued conversation to the best eligible agent whose slot can still be claimed
    (the next best if a concurrent claim took it); False when nobody can take it now."""
    need = need_of(ctx, conv)
    tried: list[str] = []
    while found := await ctx.store.candidates(need, limit=CANDIDATES_AT_A_TIME, skip=tried):
        for agent in rank_candidates(found, need):
            if await ctx.store.claim_slot(agent.id, conv.channel, ctx.now):
                await give(ctx, conv, agent.id)
                return True
        tried.extend(agent.id for agent in found)
    return False


async def give(ctx: Context, conv: Conversation, agent_id: str) -> None:
    """Hand a queued conversation to an agent whose slot was just claimed."""
    with tracer.start_as_current_span(
        "assign",
        attributes={"switchboard.conversation_id": str(conv.id), "switchboard.agent_id": agent_id},
    ):
        await _give(ctx, conv, agent_id)


async def _give(ctx: Context, conv: Conversation, agent_id: str) -> None:
    offer = ctx.policy.needs_acceptance(conv.channel)
    claim = await ctx.store.mark_assigned(conv.id, agent_id, ctx.now, accepted=not offer)
    if not claim.done:
        raise Conflict(f"conversation {conv.id} is no longer queued")
    if offer:
        timeout_s = ctx.policy.offer_timeout_s[conv.channel]
        await ctx.emit(conv, events.offered(conv, agent_id, ctx.now, timeout_s))
    else:
        await emit_assigned(ctx, conv, agent_id, claim.team)


async def emit_assigned(
    ctx: Context,
    conv: Conversation,
    agent_id: str,
    team: str | None,
    acted_by: str | None = None,
) -> None:
    await ctx.emit(conv, events.assigned(conv, agent_id, team, ctx.now, acted_by))


async def emit_queued(ctx: Context, conv: Conversation, reason: str | None) -> None:
    await ctx.emit(conv, events.queued(conv, ctx.now, reason))


async def put_back(ctx: Context, conv: Conversation, *, reason: str, exclude: bool) -> bool:
    """Take a conversation from its agent (freeing the slot), queue it again at its original
    age, and route it at once if someone can take it; True if it was re-assigned."""
    assert conv.agent_id is not None
    await ctx.store.release_slot(conv.agent_id, conv.channel)
    await ctx.store.requeue(conv.id, exclude=conv.agent_id if exclude else None, now=ctx.now)
    fresh = await ctx.store.conversation(conv.id)
    assert fresh is not None
    await emit_queued(ctx, fresh, reason)
    return await try_assign(ctx, fresh)


async def pull_queued(ctx: Context, agent_id: str, *, queued: bool | None = None) -> int:
    """Fill the agent's free slots from the queue, in queue order (priority with aging, age);
    ``queued``: whether anything is queued, when the caller has just asked."""
    pulled = 0
    if queued is None:
        queued = await ctx.store.anything_queued()
    while queued:
        agent = await ctx.store.agent(agent_id)
        if agent is None or agent.status != AgentStatus.ONLINE:
            return pulled
        window = await ctx.store.queued_for(
            agent, reach(agent, ctx.rules.escalation), per_priority=QUEUE_WINDOW
        )
        by_id = {c.id: c for c in window}
        item = next_for_agent(
            [as_queued(ctx, c) for c in window],
            agent,
            now=ctx.now,
            step_s=ctx.rules.aging.step_s,
        )
        if item is None or not await ctx.store.claim_slot(agent.id, item.need.channel, ctx.now):
            return pulled
        await give(ctx, by_id[item.conversation_id], agent.id)
        pulled += 1
        queued = await ctx.store.anything_queued()
    return pulled
