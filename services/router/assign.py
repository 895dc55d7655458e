"""Assignment mechanics shared by the use cases: who may take a conversation, giving it,
putting it back, pulling from the queue, and the periodic sweeps (queue, offers, escalation,
overflow)."""

from __future__ import annotations

from services.router.context import Context
from services.router.model import Conversation
from services.router.routing import events
from services.router.routing.batch import need_for
from services.router.routing.overflow import due_after, overflow
from services.router.routing.queue import QueuedConversation, next_for_agent, queue_key
from services.router.routing.select import Need, rank_candidates
from shared.events import (
    AgentStatus,
    AgentStatusChanged,
    Escalated,
    OfferTimedOut,
    Overflowed,
    derived_id,
)
from shared.problems import Conflict, NotFound
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


async def pull_queued(ctx: Context, agent_id: str) -> int:
    """Fill the agent's free slots from the queue, in queue order (priority with aging, age)."""
    pulled = 0
    while await ctx.store.anything_queued():
        agent = await ctx.store.agent(agent_id)
        if agent is None or agent.status != AgentStatus.ONLINE:
            return pulled
        window = await ctx.store.queued_for(
            agent,
            per_priority=QUEUE_WINDOW,
            widen_to_level=ctx.rules.escalation.widen_to_level,
            widen_teams=ctx.rules.escalation.widen_teams,
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
    return pulled


async def sweep_queue(ctx: Context, *, per_priority: int = 25) -> int:
    """Try to assign the heads of the queue, in queue order (catches any wake-up that raced
    with a commit, and conversations that escalation made eligible)."""
    # Nobody with room: nothing to try (each try reads candidates; with every agent full
    # and a long queue, the sweep cost a draining router 4% of its CPU).
    if not await ctx.store.anything_queued() or not await ctx.store.anyone_with_room():
        return 0
    await ctx.store.lock_queue_order()
    heads = await ctx.store.queue_heads(per_priority=per_priority)
    heads.sort(
        key=lambda c: queue_key(as_queued(ctx, c), now=ctx.now, step_s=ctx.rules.aging.step_s)
    )
    # Room only shrinks during a sweep: a need nobody could take stays untakeable, so each
    # need is looked for once (a draining router's sweep read candidates for 100 heads a
    # second, most of them needs already tried).
    assigned, untakeable = 0, set()
    for conv in heads:
        need = need_of(ctx, conv)
        if need in untakeable:
            continue
        if await try_assign(ctx, conv):
            assigned += 1
        else:
            untakeable.add(need)
    return assigned


async def change_status(
    ctx: Context,
    agent_id: str,
    status: AgentStatus,
    *,
    reason: str | None = None,
    acted_by: str | None = None,
    unheard_for_s: float | None = None,
) -> bool:
    """Set an agent's status. Going online pulls queued work; going away or offline re-routes
    the agent's unanswered conversations (all of them if the policy says so). With
    ``unheard_for_s`` (the presence sweep), only an agent online whose frontend was not heard
    from for that long, and whether it was; else NotFound for an unknown agent."""
    if status == AgentStatus.ONLINE:
        await ctx.store.lock_queue_order()  # before any row lock, as the sweep takes it
    # Conversations before the agent row: the order every other writer takes them in.
    held = await ctx.store.open_conversations_of(agent_id, for_update=True)
    if not await ctx.store.set_status(agent_id, status, unheard_for_s=unheard_for_s):
        if unheard_for_s is not None:
            return False
        raise NotFound(f"agent {agent_id!r} does not exist")
    ctx.publish(
        ctx.topics.agent_events,
        agent_id,
        AgentStatusChanged(
            event_id=derived_id("agent_status", agent_id, status.value, ctx.now.isoformat()),
            occurred_at=ctx.now,
            agent_id=agent_id,
            status=status,
            reason=reason,
            acted_by=acted_by,
        ),
    )
    if status == AgentStatus.ONLINE:
        await pull_queued(ctx, agent_id)
        return True
    for conv in held:
        if conv.first_response_at is None or ctx.policy.reroute_answered_on_leave:
            await put_back(ctx, conv, reason=f"agent_{status.value}", exclude=False)
    return True


async def expire_offers(ctx: Context, *, limit: int = 100) -> int:
    """Offers not accepted in time go to the next agent; an agent who missed too many offers
    in a row is set away (and its other unaccepted offers move on too)."""
    timeouts = {c.value: s for c, s in ctx.policy.offer_timeout_s.items()}
    expired = await ctx.store.expired_offers(timeouts, ctx.now, limit=limit)
    for conv in expired:
        assert conv.agent_id is not None
        await ctx.emit(
            conv,
            OfferTimedOut(
                event_id=derived_id("offer_timed_out", conv.id, conv.agent_id, conv.offered_at),
                occurred_at=ctx.now,
                conversation_id=conv.id,
                channel=conv.channel,
                agent_id=conv.agent_id,
            ),
        )
        missed = await ctx.store.count_missed_offer(conv.agent_id)
        await put_back(ctx, conv, reason="offer_timed_out", exclude=True)
        if missed >= ctx.policy.max_missed_offers:
            await change_status(ctx, conv.agent_id, AgentStatus.AWAY, reason="missed_offers")
    return len(expired)


async def escalate_due(ctx: Context, *, limit: int = 100) -> int:
    """Escalate waiting conversations near their first-response target, then route them with
    the widened need."""
    due = {
        p.value: s
        for p in ctx.rules.escalation.first_response_target_s
        if (s := ctx.rules.escalation.due(p)) is not None
    }
    convs = await ctx.store.due_for_escalation(due, ctx.now, limit=limit)
    for conv in convs:
        await ctx.store.mark_escalated(conv.id, ctx.now)
        await ctx.emit(
            conv,
            Escalated(
                event_id=derived_id("escalated", conv.id, conv.reopened),
                occurred_at=ctx.now,
                conversation_id=conv.id,
                channel=conv.channel,
                waited_s=(ctx.now - (conv.queued_at or conv.opened_at)).total_seconds(),
                target_s=ctx.rules.escalation.first_response_target_s[conv.priority],
            ),
        )
        fresh = await ctx.store.conversation(conv.id)
        assert fresh is not None
        await try_assign(ctx, fresh)
    return len(convs)


async def overflow_due(ctx: Context, *, limit: int = 100) -> int:
    """Widen the need of waiting conversations whose next overflow stage is due (every stage
    due, in order: each recorded in rules_fired, classified and announced), then route them
    with the widened need. Locked as escalation locks them (SKIP LOCKED, then a slot claimed
    on the one agent chosen), so several routers' sweeps widen each conversation once."""
    stages = ctx.rules.overflow
    convs = await ctx.store.due_for_overflow(due_after(stages), ctx.now, limit=limit)
    for conv in convs:
        widenings = overflow(conv, stages, now=ctx.now)
        if not widenings:
            continue  # not due after all (the rules changed between the query and now)
        await ctx.store.mark_overflowed(widenings[-1].conversation)
        for w in widenings:
            widened = w.conversation
            await ctx.emit(
                widened,
                Overflowed(
                    event_id=derived_id("overflowed", conv.id, conv.reopened, w.stage.id),
                    occurred_at=ctx.now,
                    conversation_id=conv.id,
                    channel=conv.channel,
                    stage=w.stage.id,
                    priority=widened.priority,
                    waited_s=w.waited_s,
                    fallback_languages=list(widened.fallback_languages),
                    skill=widened.skill,
                    min_level=widened.min_level,
                    team=widened.overflow_team,
                    final=w.final,
                ),
            )
        # The skill it needs may have changed: metrics reports and queues it by this one.
        last = widenings[-1].conversation
        cause = f"overflow:{conv.reopened}:{widenings[-1].stage.id}"
        await ctx.emit(last, events.classified(last, cause, ctx.now))
        fresh = await ctx.store.conversation(conv.id)
        assert fresh is not None
        await try_assign(ctx, fresh)
    return len(convs)
