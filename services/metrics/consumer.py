"""The metrics service's Kafka side: fold each conversation event into the facts, and each
agent event into the live view of agents, once."""

from __future__ import annotations

import json
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.store import MetricsStore
from shared.events import (
    AGENT_EVENT_TYPES,
    CONVERSATION_EVENT_TYPES,
    agent_event_adapter,
    conversation_event_adapter,
)
from shared.kafka import PoisonRecord, RecordHandler, parse_record
from shared.settings import Topics


def event_handler(sessions: async_sessionmaker[AsyncSession], topics: Topics) -> RecordHandler:
    """Apply one record of the conversation-events or agent-events topic in its own
    transaction; returns after the commit. Event types this version does not know are skipped
    (newer producers may add types)."""

    async def handle(record: ConsumerRecord[Any, Any]) -> None:
        try:
            kind = json.loads(record.value or b"").get("type")
        except (ValueError, AttributeError) as exc:
            raise PoisonRecord(f"record is not a JSON object: {exc}") from exc
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
