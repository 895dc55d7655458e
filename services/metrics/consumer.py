"""The metrics service's Kafka side: fold each conversation event into the facts, once."""

from __future__ import annotations

import json
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.store import MetricsStore
from shared.events import CONVERSATION_EVENT_TYPES, conversation_event_adapter
from shared.kafka import PoisonRecord, RecordHandler, parse_record


def event_handler(sessions: async_sessionmaker[AsyncSession]) -> RecordHandler:
    """Apply one conversation-event record in its own transaction; returns after the commit.
    Event types this version does not know are skipped (newer producers may add types)."""

    async def handle(record: ConsumerRecord[Any, Any]) -> None:
        try:
            kind = json.loads(record.value or b"").get("type")
        except (ValueError, AttributeError) as exc:
            raise PoisonRecord(f"record is not a JSON object: {exc}") from exc
        if kind not in CONVERSATION_EVENT_TYPES:
            return
        event = parse_record(conversation_event_adapter, record)
        async with sessions() as session, session.begin():
            await MetricsStore(session).apply(event)

    return handle
