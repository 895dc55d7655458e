"""The metrics service's Kafka side: fold each poll's conversation events into the facts, and
its agent events into the live view of agents, once, in one transaction (or one event per
transaction, the reference the batch is held to)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.fold_clock import FoldClock
from services.metrics.fold_store import FoldStore
from services.metrics.store import MetricsStore
from shared.consume import (
    BatchConsumeLoop,
    ConsumeLoop,
    PoisonRecord,
    RecordHandler,
    parse_record,
)
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


class Polled(NamedTuple):
    """A parsed record with where it came from (the SLA clock follows each partition)."""

    topic: str
    partition: int
    event: MetricsEvent | None


def _kind(record: ConsumerRecord[Any, Any]) -> Any:
    try:
        return json.loads(record.value or b"").get("type")
    except (ValueError, AttributeError) as exc:
        raise PoisonRecord(f"record is not a JSON object: {exc}") from exc


def polled_parser(topics: Topics) -> Callable[[ConsumerRecord[Any, Any]], Polled]:
    """``event_parser``'s event, with the record's topic and partition."""
    parse = event_parser(topics)

    def parse_polled(record: ConsumerRecord[Any, Any]) -> Polled:
        return Polled(record.topic, record.partition, parse(record))

    return parse_polled


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
    sessions: async_sessionmaker[AsyncSession], clock: FoldClock
) -> Callable[[list[Polled]], Awaitable[None]]:
    """Fold a batch of events (in arrival order) in one transaction; returns after the commit,
    which ``clock`` then knows of."""

    async def apply(records: list[Polled]) -> None:
        known = [r.event for r in records if r.event is not None]
        if known:
            async with sessions() as session, session.begin():
                await FoldStore(session).apply_batch(known)
        for r in records:
            if r.event is not None and r.topic == clock.topic:
                clock.folded(r.partition, r.event.occurred_at)

    return apply


class FoldLoop(BatchConsumeLoop[Polled]):
    """The batch consume loop, counting the batches it is settling: while none is, everything
    it has taken from the broker is folded (or dead-lettered, or rewound to). It starts its
    consumer itself: joining the group took 5 s at the broker, which the app's start (and a
    new process's first report, answered from PostgreSQL) need not wait for."""

    settling = 0

    async def run(self) -> None:
        await self.consumer.start()
        await super().run()

    async def _settle(self, records: list[ConsumerRecord[Any, Any]]) -> int:
        self.settling += 1
        try:
            return await super()._settle(records)
        finally:
            self.settling -= 1


class OneByOneLoop(ConsumeLoop):
    """The one-record-per-transaction loop, counting the partitions it is applying; it starts
    its consumer itself, as FoldLoop does."""

    settling = 0

    async def run(self) -> None:
        await self.consumer.start()
        await super().run()

    async def _apply_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> tuple[TopicPartition, int | None]:
        self.settling += 1
        try:
            return await super()._apply_partition(tp, records)
        finally:
            self.settling -= 1


def event_handler(
    sessions: async_sessionmaker[AsyncSession], topics: Topics, clock: FoldClock
) -> RecordHandler:
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
        clock.folded(record.partition, event.occurred_at)

    return handle
