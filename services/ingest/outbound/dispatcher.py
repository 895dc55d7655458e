"""The dispatcher: consumes agent replies, sends each through its channel with retries and
backoff on 5xx and timeouts (never on 4xx), and reports the outcome on the delivery-events
topic, which it alone writes; a reply it gives up on is dead-lettered with the reason.

It holds no database: a status is published after the provider answered, never from inside a
transaction, and the reply's offset is committed after that publish was acknowledged (a crash
in between sends the reply again and reports it again, under the same derived event id)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.ingest.outbound.senders import Refused, Sender, Unavailable
from shared.consume import PoisonRecord, RecordHandler, parse_record
from shared.events import OutboundReply, ReplyDelivered, ReplyFailed
from shared.ids import derived_id
from shared.kafka import publish
from shared.settings import Topics

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        senders: dict[Any, Sender],
        producer: AIOKafkaProducer,
        topics: Topics,
        *,
        max_attempts: int,
        backoff_s: float,
    ) -> None:
        self.senders = senders
        self.producer = producer
        self.topics = topics
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s

    def handler(self) -> RecordHandler:
        async def handle(record: ConsumerRecord[Any, Any]) -> None:
            await self.deliver(parse_record(OutboundReply, record))

        return handle

    async def deliver(self, reply: OutboundReply) -> None:
        """Send with retries; publish reply_delivered, or reply_failed and raise PoisonRecord
        (the consume loop dead-letters it with the reason)."""
        send = self.senders[reply.channel]
        reason = ""
        attempt = 0
        for attempt in range(1, self.max_attempts + 1):
            try:
                await send(reply)
            except Refused as exc:
                reason = f"refused: {exc}"
                break
            except Unavailable as exc:
                reason = f"unavailable after {attempt} attempts: {exc}"
                log.warning(
                    "reply delivery failed, will retry",
                    extra={
                        "conversation_id": str(reply.conversation_id),
                        "channel": reply.channel.value,
                        "attempt": attempt,
                        "error": str(exc),
                    },
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            await self._report(
                ReplyDelivered(
                    event_id=derived_id("reply_delivered", reply.message_id),
                    occurred_at=datetime.now(UTC),
                    conversation_id=reply.conversation_id,
                    channel=reply.channel,
                    message_id=reply.message_id,
                    attempts=attempt,
                )
            )
            return
        await self._report(
            ReplyFailed(
                event_id=derived_id("reply_failed", reply.message_id),
                occurred_at=datetime.now(UTC),
                conversation_id=reply.conversation_id,
                channel=reply.channel,
                message_id=reply.message_id,
                attempts=attempt,
                reason=reason,
            )
        )
        raise PoisonRecord(f"reply {reply.message_id} not delivered: {reason}")

    async def _report(self, event: ReplyDelivered | ReplyFailed) -> None:
        await publish(self.producer, self.topics.delivery_events, str(event.conversation_id), event)
