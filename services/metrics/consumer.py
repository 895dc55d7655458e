"""The metrics service's Kafka side: fold each poll's conversation events into the facts, and
its agent events into the live view of agents, once, in one transaction (or one event per
transaction, the reference the batch is held to)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.fold_store import FoldStore
from services.metrics.store import MetricsStore
from shared.consume import PoisonRecord, RecordHandler, parse_record
from shared.events import (
    AGENT_EVENT_TYPES,
    CONVERSATION_EVENT_TYPES,
    AgentProfileChanged,
    AgentStatusChanged,
    AnyConversationEvent,
    agent_event_adapter,
    conversation_event_adapter,
)
from shared.settings import Topics

MetricsEvent = AnyConversationEvent | AgentStatusChanged | AgentProfileChanged


def _kind(record: ConsumerRecord[Any, Any]) -> Any:
    try:
        return json.loads(record.value or b"").get("type")
    except (ValueError, AttributeError) as exc:
        raise PoisonRecord(f"record is not a JSON object: {exc}") from exc


def event_parser(topics: Topics) -> Callable[[ConsumerRecord[Any, Any]], MetricsEvent | None]:
    """Parse a record of the conversation-events or agent-events topic; None for event types
    this version does not know (newer producers may add types), PoisonRecord for garbage."""

    def parse(record: ConsumerRecord[Any, Any]) -> MetricsEvent | None:
        # Parsed once in the usual case; the type is looked at only when that fails.
        try:
            if record.topic == topics.agent_events:
                return agent_event_adapter.validate_json(record.value or b"")
            return conversation_event_adapter.validate_json(record.value or b"")
        except ValidationError:
            pass
        if record.topic == topics.agent_events:
            if _kind(record) not in AGENT_EVENT_TYPES:
                return None
            return parse_record(agent_event_adapter, record)  # PoisonRecord: what is wrong
        if _kind(record) not in CONVERSATION_EVENT_TYPES:
            return None
        return parse_record(conversation_event_adapter, record)

    return parse


def batch_folder(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[[list[MetricsEvent | None]], Awaitable[None]]:
    """Fold a batch of events (in arrival order) in one transaction; returns after the commit."""

    async def apply(events: list[MetricsEvent | None]) -> None:
        known = [e for e in events if e is not None]
        if not known:
            return
        async with sessions() as session, session.begin():
            await FoldStore(session).apply_batch(known)

    return apply


def event_handler(sessions: async_sessionmaker[AsyncSession], topics: Topics) -> RecordHandler:
    """Apply one record of the conversation-events or agent-events topic in its own
    transaction; returns after the commit. Event types this version does not know are skipped
    (newer producers may add types)."""

    async def handle(record: ConsumerRecord[Any, Any]) -> None:
        kind = _kind(record)
        if record.topic == topics.agent_events:
            if kind not in AGENT_EVENT_TYPES:
                return
            agent_event = parse_record(agent_event_adapter, record)
            async with sessions() as session, session.begin():
                await MetricsStore(session).apply_agent_event(agent_event)
            return
        if kind not in CONVERSATION_EVENT_TYPES:
            return
        event = parse_record(conversation_event_adapter, record)
        async with sessions() as session, session.begin():
            await MetricsStore(session).apply(event)

    return handle
