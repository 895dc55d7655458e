"""The router's periodic sweeps, each a transaction of its own: agents whose frontend went
quiet set away, offers not accepted in time moved on, conversations near their target
escalated, overflow stages applied, and the heads of the queue tried again. They run in the
processes that consume (``intake`` and ``all`` roles)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.router.assign import as_queued, need_of, put_back, try_assign
from services.router.context import Context
from services.router.handlers import set_status
from services.router.presence import PRESENCE_TIMEOUT, Presence
from services.router.routing import events
from services.router.routing.overflow import due_after, overflow
from services.router.routing.queue import queue_key
from services.router.store import RouterStore
from services.router.uow import UnitOfWork
from shared import rawdb
from shared.events import AgentStatus, Escalated, OfferTimedOut, Overflowed
from shared.ids import derived_id

log = logging.getLogger(__name__)


async def sweep_forever(
    uow: UnitOfWork,
    interval_s: float,
    *,
    presence_timeout_s: float = 0,
    presence: Presence | None = None,
) -> None:
    """Periodically: set away agents whose frontend went quiet (with a presence timeout),
    move expired offers on, escalate conversations near their target, widen those whose
    overflow stage is due, and assign queued
    conversations that some agent can now take. Each in its own transaction.

    Presence: this process's ``presence`` is written first (what it heard counts at once),
    and nobody is set away before one flush interval has passed since the sweep started, so
    that after a restart of the desk every API process has written what it heard first."""

    async def in_transaction(sweep: Callable[[Context], Awaitable[int]]) -> int:
        async with uow() as ctx:
            return await sweep(ctx)

    started = asyncio.get_running_loop().time()
    grace_s = presence.flush_s if presence is not None else 0.0

    async def presence_sweep() -> int:
        if asyncio.get_running_loop().time() - started < grace_s:
            return 0
        if presence is not None:
            await presence.flush()
        return await away_unheard(uow, presence_timeout_s)

    sweeps: dict[str, Callable[[], Awaitable[int]]] = {
        **({"presence": presence_sweep} if presence_timeout_s > 0 else {}),
        "offers": lambda: in_transaction(expire_offers),
        "escalation": lambda: in_transaction(escalate_due),
        "overflow": lambda: in_transaction(overflow_due),
        "queue": lambda: in_transaction(sweep_queue),
    }
    while True:
        await asyncio.sleep(interval_s)
        for name, sweep in sweeps.items():
            try:
                done = await sweep()
                if done:
                    log.info("sweep acted", extra={"sweep": name, "count": done})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sweep failed", extra={"sweep": name, "error": repr(exc)})


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
            await set_status(ctx, conv.agent_id, AgentStatus.AWAY, reason="missed_offers")
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


async def away_unheard(uow: UnitOfWork, timeout_s: float, *, limit: int = 100) -> int:
    """Set away every agent online whose frontend was not heard from for ``timeout_s``,
    re-routing its unanswered conversations; each agent in a transaction of its own, as if it
    had gone away itself. How many were set away."""
    async with rawdb.autocommit(uow.engine) as db:
        unheard = await RouterStore(db).unheard_agents(timeout_s, limit=limit)
    done = 0
    for agent_id in unheard:
        async with uow() as ctx:
            # Re-checked under the agent's lock: a frontend heard from meanwhile keeps it.
            done += await set_status(
                ctx, agent_id, AgentStatus.AWAY, reason=PRESENCE_TIMEOUT, unheard_for_s=timeout_s
            )
    return done
