"""What the router does, one function per use case. Handlers take a Context (store, topics,
rules, policy, an explicit ``now``); they never commit (the caller's unit of work does) and
never talk to Kafka (events go to the outbox in the same transaction)."""

from __future__ import annotations

import uuid
from dataclasses import replace

from services.router.assign import (
    emit_queued,
    give,
    need_of,
    pull_queued,
    put_back,
    try_assign,
)
from services.router.context import Context
from services.router.model import Conversation, FirstMessage
from services.router.routing import events
from services.router.routing.classify import Classification, classify, raise_on_followup
from services.router.routing.select import is_eligible
from shared.events import (
    AgentProfileChanged,
    AgentReplied,
    AgentStatus,
    AgentStatusChanged,
    InboundMessage,
    OutboundReply,
    Priority,
    Resolved,
    Skill,
    Transferred,
)
from shared.ids import derived_id
from shared.problems import BadRequest, Conflict, NotFound


async def receive_message(ctx: Context, message: InboundMessage) -> None:
    """Apply one inbound message: continue its open conversation, reopen a recently resolved
    one, or open a new one; classify; assign or queue. A message already applied (a
    redelivery, a provider's retry) changes nothing."""
    seen, conv = await ctx.store.arrival(
        message.message_id, message.conversation_key, ctx.now - ctx.policy.reopen_window
    )
    if seen:
        return
    found = classify(
        message.text_for_routing or message.text,
        rules=ctx.rules,
        tier=message.customer.tier,
        language_hint=message.customer.language,
        channel=message.channel,
        category=message.category,
    )
    if conv is None:
        await _open(ctx, message, found)
        return
    if message.group is not None and message.group != conv.group_name:
        await ctx.store.rename_group(conv.id, message.group)
    if conv.state == "resolved":
        await _reopen(ctx, conv, message, found)
    else:
        await _continue(ctx, conv, message, found)


async def _open(ctx: Context, message: InboundMessage, found: Classification) -> None:
    conv = await ctx.store.create_conversation(
        cid=derived_id("conversation", message.message_id),
        key=message.conversation_key,
        channel=message.channel,
        customer_id=message.customer.id,
        tier=message.customer.tier,
        category=message.category,
        classification=found,
        opened_at=message.occurred_at,
        first=FirstMessage(
            message.message_id,
            message.text,
            message.channel_message_id,
            message.sent_at,
            message.attachments,
            message.edit_of,
        ),
        group=message.group,
    )
    await ctx.emit(conv, events.opened(conv, message))
    await _emit_received(ctx, conv, message)
    await _emit_classified(ctx, conv, message.message_id)
    if not await try_assign(ctx, conv):
        await emit_queued(ctx, conv, None)


async def _continue(
    ctx: Context, conv: Conversation, message: InboundMessage, found: Classification
) -> None:
    """A follow-up stays with the conversation's agent; while waiting, words of urgency raise
    the priority (writing again by itself does not)."""
    await _add_inbound(ctx, conv, message)
    if conv.state == "assigned" and conv.agent_id is not None:
        await ctx.store.wake_agent(conv.agent_id)
        return
    raised = raise_on_followup(conv.classification, found)
    if raised != conv.classification:
        await ctx.store.reclassify(conv.id, raised)
        await _emit_classified(ctx, await _reload(ctx, conv.id), message.message_id)


async def _reopen(
    ctx: Context, conv: Conversation, message: InboundMessage, found: Classification
) -> None:
    """Back to the last agent if online with room (never to an offline one), else routed."""
    last_agent = conv.last_agent_id or conv.agent_id
    await ctx.store.reopen(conv.id, ctx.now)
    conv = await _reload(ctx, conv.id)
    await ctx.emit(conv, events.reopened(conv, message, last_agent))
    await _add_inbound(ctx, conv, message)
    raised = raise_on_followup(conv.classification, found)
    if raised != conv.classification:
        await ctx.store.reclassify(conv.id, raised)
        conv = await _reload(ctx, conv.id)
        await _emit_classified(ctx, conv, message.message_id)
    if last_agent is not None and await ctx.store.claim_slot(last_agent, conv.channel, ctx.now):
        await give(ctx, conv, last_agent)
    elif not await try_assign(ctx, conv):
        await emit_queued(ctx, conv, "reopened")


async def _reload(ctx: Context, conv_id: uuid.UUID) -> Conversation:
    conv = await ctx.store.conversation(conv_id)
    if conv is None:
        raise NotFound(f"conversation {conv_id} not found")
    return conv


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
        attachments=message.attachments,
        edit_of=message.edit_of,
    )
    await _emit_received(ctx, conv, message)


async def _emit_received(ctx: Context, conv: Conversation, message: InboundMessage) -> None:
    await ctx.emit(conv, events.received(conv, message))


async def _emit_classified(
    ctx: Context,
    conv: Conversation,
    cause: object,
    corrected_by: str | None = None,
    acted_by: str | None = None,
) -> None:
    await ctx.emit(conv, events.classified(conv, cause, ctx.now, corrected_by, acted_by))


# ---------------------------------------------------------------- agents


async def upsert_agent(
    ctx: Context,
    *,
    agent_id: str,
    name: str,
    skills: dict[str, int],
    languages: list[str],
    capacity: dict[str, int],
    team: str | None = None,
    max_load: int | None = None,
) -> None:
    """Create or update an agent; raised capacity pulls queued work."""
    await ctx.store.upsert_agent(
        agent_id=agent_id,
        name=name,
        skills=skills,
        languages=sorted({lang.split("-")[0].lower() for lang in languages}),
        capacity=capacity,
        team=team,
        max_load=max_load,
    )
    ctx.publish(
        ctx.topics.agent_events,
        agent_id,
        AgentProfileChanged(
            event_id=derived_id("agent_profile", agent_id, ctx.now.isoformat()),
            occurred_at=ctx.now,
            agent_id=agent_id,
            name=name,
            team=team,
            capacity=capacity,
            max_load=max_load,
        ),
    )
    await pull_queued(ctx, agent_id)


async def set_status(
    ctx: Context,
    agent_id: str,
    status: AgentStatus,
    *,
    reason: str | None = None,
    acted_by: str | None = None,
    unheard_for_s: float | None = None,
) -> bool:
    """Set an agent's status. Going online pulls queued work; going away or offline re-routes
    the agent's unanswered conversations (all of them if the policy says so). ``acted_by``:
    who did it for the agent (a desk's or ops' credential), if not the agent itself. With
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


# ---------------------------------------------------------------- conversations


async def _own_conversation(
    ctx: Context, conversation_id: uuid.UUID, agent_id: str
) -> Conversation:
    conv = await ctx.store.conversation(conversation_id, for_update=True)
    # Another agent's conversation is reported as absent: nothing leaks that it exists.
    if conv is None or conv.agent_id != agent_id or conv.state == "queued":
        raise NotFound(f"conversation {conversation_id} is not assigned to agent {agent_id!r}")
    if conv.state != "assigned":
        raise Conflict(f"conversation {conversation_id} is {conv.state}")
    return conv


async def accept(
    ctx: Context, *, conversation_id: uuid.UUID, agent_id: str, acted_by: str | None = None
) -> None:
    """The agent accepts an offered conversation (a no-op if already accepted)."""
    conv = await _own_conversation(ctx, conversation_id, agent_id)
    await _accept(ctx, conv, acted_by)


async def _accept(ctx: Context, conv: Conversation, acted_by: str | None) -> None:
    """An offered conversation becomes assigned: ``conversation.assigned`` is the acceptance."""
    if conv.accepted_at is None and (claim := await ctx.store.mark_accepted(conv.id, ctx.now)).done:
        assert conv.agent_id is not None
        await ctx.store.reset_missed_offers(conv.agent_id)
        accepted = events.assigned(
            conv, conv.agent_id, claim.team, ctx.now, acted_by, offered_at=conv.offered_at
        )
        await ctx.emit(conv, accepted)


async def reply(
    ctx: Context,
    *,
    conversation_id: uuid.UUID,
    agent_id: str,
    text: str,
    message_id: uuid.UUID,
    acted_by: str | None = None,
) -> None:
    """Store an agent's reply (accepting an offer) and hand it to the channel for delivery."""
    conv = await _own_conversation(ctx, conversation_id, agent_id)
    await _accept(ctx, conv, acted_by)
    await ctx.store.add_reply(
        message_id=message_id,
        conversation_id=conv.id,
        author=agent_id,
        text=text,
        created_at=ctx.now,
    )
    await ctx.emit(
        conv,
        AgentReplied(
            event_id=derived_id("agent_replied", message_id),
            occurred_at=ctx.now,
            conversation_id=conv.id,
            channel=conv.channel,
            agent_id=agent_id,
            message_id=message_id,
            acted_by=acted_by,
        ),
    )
    ctx.publish(
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
            customer_id=conv.customer_id,
        ),
    )


async def resolve(
    ctx: Context, *, conversation_id: uuid.UUID, agent_id: str, acted_by: str | None = None
) -> Conversation:
    """Close a conversation, free the agent's slot and let the agent pull the next one; the
    conversation as resolved."""
    conv = await _own_conversation(ctx, conversation_id, agent_id)
    # Resolving an offer accepts it first, so its events say offered, assigned, resolved
    # (metrics counts the assignment and the queue wait).
    await _accept(ctx, conv, acted_by)
    # With nothing queued, nothing is claimed after the release: the resolve's statement
    # frees the slot alone (the transaction's last lock). Otherwise the release holds the
    # agent's row, as the pull after it will.
    resolved, queued = await ctx.store.resolve(conv.id, agent_id, conv.channel, ctx.now)
    if queued:
        await ctx.store.release_slot(agent_id, conv.channel)
    await ctx.emit(
        conv,
        Resolved(
            event_id=derived_id("resolved", conv.id, conv.reopened),
            occurred_at=ctx.now,
            conversation_id=conv.id,
            channel=conv.channel,
            agent_id=agent_id,
            acted_by=acted_by,
        ),
    )
    if queued:
        await pull_queued(ctx, agent_id, queued=True)
    return resolved


async def transfer(
    ctx: Context,
    *,
    conversation_id: uuid.UUID,
    agent_id: str,
    reason: str,
    to_agent_id: str | None = None,
    to_skill: Skill | None = None,
    acted_by: str | None = None,
) -> None:
    """Move a conversation to another agent (known, with the conversation's skill at the
    level it needs, online with room) or to a skill's queue (routed at once if someone can
    take it); the freed slot pulls from the queue."""
    if (to_agent_id is None) == (to_skill is None):
        raise BadRequest("transfer to exactly one of an agent or a skill")
    conv = await _own_conversation(ctx, conversation_id, agent_id)
    event = Transferred(
        event_id=derived_id("transferred", conv.id, agent_id, ctx.now.isoformat()),
        occurred_at=ctx.now,
        conversation_id=conv.id,
        channel=conv.channel,
        from_agent_id=agent_id,
        to_agent_id=to_agent_id,
        to_skill=to_skill,
        reason=reason,
        acted_by=acted_by,
    )
    if to_agent_id is not None:
        if to_agent_id == agent_id:
            raise BadRequest("a conversation cannot be transferred to its own agent")
        await ctx.store.lock_agents([agent_id, to_agent_id])
        target = await ctx.store.agent(to_agent_id)
        if target is None:
            raise NotFound(f"agent {to_agent_id!r} does not exist")
        need = need_of(ctx, conv)
        # Only the skill binds an explicit transfer: language and team are the judgement of
        # the agent who hands it over, but an agent without the skill cannot work on it.
        if target.skills.get(need.skill, 0) < need.min_level:
            raise Conflict(
                f"agent {to_agent_id!r} lacks skill {need.skill.value!r} at level "
                f"{need.min_level}; transfer to the skill's queue instead"
            )
        if not await ctx.store.claim_slot(to_agent_id, conv.channel, ctx.now):
            raise Conflict(f"agent {to_agent_id!r} is not online with room on {conv.channel}")
        await ctx.store.release_slot(agent_id, conv.channel)
        await ctx.store.requeue(conv.id, exclude=agent_id, now=ctx.now)
        await ctx.emit(conv, event)
        await give(ctx, await _reload(ctx, conv.id), to_agent_id)
    else:
        assert to_skill is not None
        corrected = replace(conv.classification, skill=to_skill, min_level=1, team=None)
        await ctx.store.reclassify(conv.id, corrected)
        await ctx.emit(conv, event)
        conv = await _reload(ctx, conv.id)
        # Another skill's queue is a classification too: metrics slices reports and its live
        # queues by the latest one.
        await _emit_classified(ctx, conv, f"transferred:{ctx.now.isoformat()}", agent_id, acted_by)
        await put_back(ctx, conv, reason="transferred", exclude=True)
    await pull_queued(ctx, agent_id)


async def correct_classification(
    ctx: Context,
    *,
    conversation_id: uuid.UUID,
    agent_id: str,
    priority: Priority | None,
    skill: Skill | None,
    language: str | None,
    acted_by: str | None = None,
) -> None:
    """An agent corrects priority, skill or language; if the agent no longer fits the
    conversation it is re-routed."""
    conv = await _own_conversation(ctx, conversation_id, agent_id)
    old = conv.classification
    corrected = replace(
        old,
        priority=priority or old.priority,
        skill=skill or old.skill,
        language=language or old.language,
        rules_fired=(*old.rules_fired, f"corrected.by.{agent_id}"),
        min_level=1 if skill and skill != old.skill else old.min_level,
    )
    await ctx.store.reclassify(conv.id, corrected)
    conv = await _reload(ctx, conv.id)
    await _emit_classified(ctx, conv, f"corrected:{ctx.now.isoformat()}", agent_id, acted_by)
    agent = await ctx.store.agent(agent_id)
    assert agent is not None
    # The agent's own slot is in use by this conversation: judge fitness with it freed.
    freed = replace(
        agent, load={**agent.load, conv.channel.value: agent.load.get(conv.channel.value, 1) - 1}
    )
    if not is_eligible(freed, need_of(ctx, conv)):
        await put_back(ctx, conv, reason="reclassified", exclude=True)
        await pull_queued(ctx, agent_id)
