"""What the router does, one function per use case. Handlers take a store and an explicit
``now``; they never commit (the caller's unit of work does) and never talk to Kafka directly
(events go to the outbox in the same transaction)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.router.routing.classify import classify, escalate
from services.router.routing.queue import next_for_agent
from services.router.routing.rules import RuleSet
from services.router.routing.select import Need, rank_candidates
from services.router.store import Conversation, RouterStore
from shared.events import (
    AgentReplied,
    AgentStatus,
    AgentStatusChanged,
    Assigned,
    Classified,
    ConversationOpened,
    InboundMessage,
    MessageReceived,
    OutboundReply,
    Queued,
    Resolved,
    derived_id,
)
from shared.problems import Conflict, NotFound
from shared.settings import Topics

# How many queued conversations one pull looks at (and locks) at a time.
QUEUE_WINDOW = 50


@dataclass(frozen=True)
class Context:
    store: RouterStore
    topics: Topics
    now: datetime


async def _emit_conversation(ctx: Context, conv: Conversation, event: object) -> None:
    await ctx.store.enqueue(ctx.topics.conversation_events, str(conv.id), event)  # type: ignore[arg-type]


async def receive_message(ctx: Context, message: InboundMessage, rules: RuleSet) -> None:
    """Apply one inbound message: open or continue its conversation, classify, assign or queue.
    A message already applied (a redelivery or a provider's retry) changes nothing."""
    store = ctx.store
    if await store.message_exists(message.message_id):
        return
    conv = await store.open_conversation_for_key(message.conversation_key)
    found = classify(
        message.text,
        tier=message.customer.tier,
        language_hint=message.customer.language,
        rules=rules,
    )
    if conv is None:
        conv_id = derived_id("conversation", message.message_id)
        await store.create_conversation(
            cid=conv_id,
            key=message.conversation_key,
            channel=message.channel,
            customer_id=message.customer.id,
            tier=message.customer.tier,
            classification=found,
            opened_at=message.occurred_at,
        )
        conv = await store.conversation(conv_id)
        assert conv is not None
        await _emit_conversation(
            ctx,
            conv,
            ConversationOpened(
                event_id=derived_id("opened", conv.id),
                occurred_at=message.occurred_at,
                conversation_id=conv.id,
                channel=conv.channel,
                conversation_key=conv.conversation_key,
                customer_id=conv.customer_id,
                customer_tier=conv.customer_tier,
            ),
        )
        await _add_inbound(ctx, conv, message)
        await _emit_classified(ctx, conv, message.message_id)
        if not await _assign(ctx, conv):
            await _emit_conversation(
                ctx,
                conv,
                Queued(
                    event_id=derived_id("queued", conv.id, ctx.now.isoformat()),
                    occurred_at=ctx.now,
                    conversation_id=conv.id,
                    channel=conv.channel,
                    priority=conv.priority,
                    skill=conv.skill,
                    language=conv.language,
                ),
            )
        return
    await _add_inbound(ctx, conv, message)
    if conv.state == "assigned" and conv.agent_id is not None:
        await store.wake_agent(conv.agent_id)
    elif conv.state == "queued":
        raised = escalate(conv.classification, found)
        if raised != conv.classification:
            await store.reclassify(conv.id, raised)
            conv = await store.conversation(conv.id)
            assert conv is not None
            await _emit_classified(ctx, conv, message.message_id)


async def _add_inbound(ctx: Context, conv: Conversation, message: InboundMessage) -> None:
    await ctx.store.add_message(
        message_id=message.message_id,
        conversation_id=conv.id,
        direction="inbound",
        author=message.customer.id,
        text=message.text,
        created_at=message.occurred_at,
        channel_message_id=message.channel_message_id,
        sent_at=message.sent_at,
    )
    await _emit_conversation(
        ctx,
        conv,
        MessageReceived(
            event_id=derived_id("message_received", message.message_id),
            occurred_at=message.occurred_at,
            conversation_id=conv.id,
            channel=conv.channel,
            message_id=message.message_id,
        ),
    )


async def _emit_classified(ctx: Context, conv: Conversation, cause: uuid.UUID) -> None:
    await _emit_conversation(
        ctx,
        conv,
        Classified(
            event_id=derived_id("classified", conv.id, cause),
            occurred_at=ctx.now,
            conversation_id=conv.id,
            channel=conv.channel,
            priority=conv.priority,
            skill=conv.skill,
            language=conv.language,
            rules_fired=list(conv.rules_fired),
        ),
    )


async def _assign(ctx: Context, conv: Conversation) -> bool:
    """Assign a queued conversation to the best eligible agent whose slot can still be
    claimed; False when nobody can take it now."""
    need = Need(conv.channel, conv.skill, conv.language)
    for agent in rank_candidates(await ctx.store.candidates(need), need):
        if await ctx.store.claim_slot(agent.id, conv.channel, ctx.now):
            await _give(ctx, conv, agent.id)
            return True
    return False


async def _give(ctx: Context, conv: Conversation, agent_id: str) -> None:
    if not await ctx.store.mark_assigned(conv.id, agent_id, ctx.now):
        raise Conflict(f"conversation {conv.id} is no longer queued")
    await ctx.store.wake_agent(agent_id)
    await _emit_conversation(
        ctx,
        conv,
        Assigned(
            event_id=derived_id("assigned", conv.id, agent_id, ctx.now.isoformat()),
            occurred_at=ctx.now,
            conversation_id=conv.id,
            channel=conv.channel,
            agent_id=agent_id,
        ),
    )


async def pull_queued(ctx: Context, agent_id: str) -> int:
    """Fill the agent's free slots from the queue, most urgent and oldest first."""
    pulled = 0
    while True:
        agent = await ctx.store.agent(agent_id)
        if agent is None or agent.status != AgentStatus.ONLINE:
            return pulled
        window = await ctx.store.queued_for(agent, limit=QUEUE_WINDOW)
        item = next_for_agent(window, agent)
        if item is None or not await ctx.store.claim_slot(agent.id, item.channel, ctx.now):
            return pulled
        conv = await ctx.store.conversation(item.conversation_id)
        assert conv is not None
        await _give(ctx, conv, agent.id)
        pulled += 1


async def sweep_queue(ctx: Context, *, limit: int = 100) -> int:
    """Try to assign the head of the queue (catches any wake-up that raced with a commit)."""
    assigned = 0
    for item in await ctx.store.queue_head(limit=limit):
        conv = await ctx.store.conversation(item.conversation_id)
        if conv is not None and await _assign(ctx, conv):
            assigned += 1
    return assigned


async def upsert_agent(
    ctx: Context,
    *,
    agent_id: str,
    name: str,
    skills: dict[str, int],
    languages: list[str],
    capacity: dict[str, int],
) -> None:
    """Create or update an agent; raised capacity pulls queued work."""
    await ctx.store.upsert_agent(
        agent_id=agent_id,
        name=name,
        skills=skills,
        languages=sorted({lang.split("-")[0].lower() for lang in languages}),
        capacity=capacity,
    )
    await pull_queued(ctx, agent_id)


async def set_status(ctx: Context, agent_id: str, status: AgentStatus) -> None:
    """Change an agent's status; going online pulls queued work."""
    if not await ctx.store.set_status(agent_id, status):
        raise NotFound(f"agent {agent_id!r} does not exist")
    await ctx.store.enqueue(
        ctx.topics.agent_events,
        agent_id,
        AgentStatusChanged(
            event_id=derived_id("agent_status", agent_id, status.value, ctx.now.isoformat()),
            occurred_at=ctx.now,
            agent_id=agent_id,
            status=status,
        ),
    )
    if status == AgentStatus.ONLINE:
        await pull_queued(ctx, agent_id)


async def _own_conversation(
    ctx: Context, conversation_id: uuid.UUID, agent_id: str
) -> Conversation:
    conv = await ctx.store.conversation(conversation_id, for_update=True)
    # Another agent's conversation is reported as absent: nothing leaks that it exists.
    if conv is None or conv.agent_id != agent_id:
        raise NotFound(f"conversation {conversation_id} is not assigned to agent {agent_id!r}")
    if conv.state != "assigned":
        raise Conflict(f"conversation {conversation_id} is {conv.state}")
    return conv


async def reply(
    ctx: Context, *, conversation_id: uuid.UUID, agent_id: str, text: str, message_id: uuid.UUID
) -> None:
    """Store an agent's reply and hand it to the channel for delivery."""
    conv = await _own_conversation(ctx, conversation_id, agent_id)
    await ctx.store.add_message(
        message_id=message_id,
        conversation_id=conv.id,
        direction="outbound",
        author=agent_id,
        text=text,
        created_at=ctx.now,
    )
    await ctx.store.mark_first_response(conv.id, ctx.now)
    await _emit_conversation(
        ctx,
        conv,
        AgentReplied(
            event_id=derived_id("agent_replied", message_id),
            occurred_at=ctx.now,
            conversation_id=conv.id,
            channel=conv.channel,
            agent_id=agent_id,
            message_id=message_id,
        ),
    )
    await ctx.store.enqueue(
        ctx.topics.outbound,
        str(conv.id),
        OutboundReply(
            event_id=derived_id("outbound", message_id),
            occurred_at=ctx.now,
            conversation_id=conv.id,
            conversation_key=conv.conversation_key,
            channel=conv.channel,
            message_id=message_id,
            agent_id=agent_id,
            text=text,
        ),
    )


async def resolve(ctx: Context, *, conversation_id: uuid.UUID, agent_id: str) -> None:
    """Close a conversation, free the agent's slot and let the agent pull the next one."""
    conv = await _own_conversation(ctx, conversation_id, agent_id)
    await ctx.store.mark_resolved(conv.id, ctx.now)
    await ctx.store.release_slot(agent_id, conv.channel)
    await _emit_conversation(
        ctx,
        conv,
        Resolved(
            event_id=derived_id("resolved", conv.id),
            occurred_at=ctx.now,
            conversation_id=conv.id,
            channel=conv.channel,
            agent_id=agent_id,
        ),
    )
    await pull_queued(ctx, agent_id)
