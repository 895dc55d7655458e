"""Apply a poll's inbound messages in one transaction: read and lock what they meet (their
threads' conversations, then the agents they could go to, each in id order), plan in memory
with the pure planner, write the plan set-based, and leave its events in the outbox.

The outcome equals ``handlers.receive_message`` applied to each message in turn at the same
``now`` (tests/integration/test_batched_intake.py holds it to that)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from services.router.context import Context
from services.router.intake_store import IntakeStore
from services.router.routing.batch import (
    Intake,
    Plan,
    classify_message,
    needs_of_batch,
    plan_batch,
)
from shared.events import InboundMessage
from shared.tracing import record_span


async def receive_messages(
    ctx: Context,
    messages: Sequence[InboundMessage],
    traces: Mapping[uuid.UUID, str] | None = None,
) -> Plan:
    """Apply ``messages`` (in offset order); messages applied before change nothing.
    ``traces``: each message's trace (a W3C carrier as JSON, from its record's headers), which
    the events it causes and its assignment span continue."""
    traces = traces or {}
    store = IntakeStore(ctx.store.db)
    seen = await store.applied([m.message_id for m in messages])
    fresh = [m for m in messages if m.message_id not in seen]
    keys = list(dict.fromkeys(m.conversation_key for m in fresh))
    threads = await store.lock_threads(keys, ctx.now - ctx.policy.reopen_window) if keys else {}
    # Agents written to without being chosen: a reopened thread's last agent, and the agent
    # of an assigned thread (woken by the follow-up).
    also = {c.last_agent_id or c.agent_id for c in threads.values() if c.state == "resolved"}
    also |= {c.agent_id for c in threads.values() if c.state == "assigned"}
    classified = {m.message_id: classify_message(m, ctx.rules) for m in fresh}
    needs = set(needs_of_batch(fresh, threads, classified))
    agents = (
        await store.lock_agents_for(needs, sorted(a for a in also if a), best=len(fresh))
        if fresh
        else {}
    )
    plan = plan_batch(
        messages,
        Intake(seen, threads, agents),
        rules=ctx.rules,
        policy=ctx.policy,
        now=ctx.now,
        classified=classified,
    )
    await store.write_intake(plan)
    for conversation_id, event, cause in plan.events:
        topic = ctx.topics.conversation_events
        ctx.publish(topic, str(conversation_id), event, traces.get(cause))
    for cause, conversation_id, agent_id in plan.given:
        # The one-at-a-time handlers trace each assignment as a span "assign" (assign.give).
        attributes = {
            "switchboard.conversation_id": str(conversation_id),
            "switchboard.agent_id": agent_id,
        }
        record_span("assign", traces.get(cause), attributes)
    return plan
