"""Consume loops: a consumer's records applied in order per partition, an offset committed only
after the database transaction that applied its records, what cannot be applied dead-lettered
with the reason, and failures of the outside world retried without committing anything past
what was applied. ``ConsumeLoop`` applies one record at a time, ``BatchConsumeLoop`` a poll per
transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind
from pydantic import TypeAdapter, ValidationError

from shared.events import DeadLetter
from shared.kafka import publish
from shared.tracing import (
    carrier_json_of,
    context_from_headers,
    record_span,
    tracer,
    tracing_on,
)

log = logging.getLogger(__name__)

M = TypeVar("M")


class PoisonRecord(Exception):
    """A record that can never be applied (unparseable, or refused by the handler)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_adapters: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(model: type[M]) -> TypeAdapter[M]:
    """One adapter per model (building one per record was 4% of a draining router's CPU)."""
    adapter = _adapters.get(model)
    if adapter is None:
        adapter = _adapters[model] = TypeAdapter(model)
    return adapter


def parse_record(model: type[M] | TypeAdapter[M], record: ConsumerRecord[Any, Any]) -> M:
    """Parse a record's JSON value, or raise PoisonRecord saying what is wrong with it."""
    adapter = model if isinstance(model, TypeAdapter) else _adapter(model)
    if record.value is None:
        raise PoisonRecord("record has no value")
    try:
        return adapter.validate_json(record.value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise PoisonRecord(f"invalid {getattr(model, '__name__', 'event')}: {problems}") from exc


def _is_transient(exc: BaseException) -> bool:
    """Failures of the outside world (database, broker, network) and lost races between
    transactions: retry, never dead-letter."""
    from shared.db import is_transient_db_error

    if isinstance(exc, OSError | TimeoutError | KafkaError):
        return True
    return is_transient_db_error(exc)


RecordHandler = Callable[[ConsumerRecord[Any, Any]], Awaitable[None]]


class ConsumeLoop:
    """Runs ``handle`` on every record of a consumer, in order per partition.

    - applied records: their offsets are committed once the handler returned (the handler
      commits its own database transaction before returning);
    - PoisonRecord, or any other error that repeats ``max_attempts`` times: the record goes to
      the dead-letter topic with the reason, and the loop moves on;
    - transient failures (database or broker down): the partition is rewound to the failed
      record and retried after a pause, without committing anything past what was applied.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        *,
        handle: RecordHandler,
        dead_letter_topic: str,
        group_id: str,
        max_attempts: int = 3,
        retry_pause: float = 0.5,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.handle = handle
        self.dead_letter_topic = dead_letter_topic
        self.group_id = group_id
        self.max_attempts = max_attempts
        self.retry_pause = retry_pause
        self.healthy = True
        self.applied = 0
        self.dead_lettered = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the loop in the background."""
        self._task = asyncio.create_task(self.run(), name=f"consume-{self.group_id}")
        self._task.add_done_callback(self._on_exit)

    async def stop(self) -> None:
        """Stop after the record being applied (its transaction rolls back if cut short, and
        its offset was not committed, so it is applied again by whoever consumes next)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ready(self) -> bool:
        """Running, and the last record was applied without a transient failure."""
        return self._task is not None and not self._task.done() and self.healthy

    def _on_exit(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "consume loop stopped", exc_info=task.exception(), extra={"group": self.group_id}
            )

    async def run(self) -> None:
        """Consume until cancelled. The partitions of a batch are applied concurrently (each
        in its own order, one record at a time), then their offsets committed together."""
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            if not batch:
                continue
            applied = await asyncio.gather(
                *(self._apply_partition(tp, records) for tp, records in batch.items())
            )
            offsets = {tp: offset for tp, offset in applied if offset is not None}
            if offsets:
                try:
                    await self.consumer.commit(offsets)
                except KafkaError as exc:
                    # A rebalance took partitions away: their new owner re-reads from the last
                    # commit and applies nothing twice (the handlers are idempotent).
                    log.warning("offset commit failed", extra={"error": repr(exc)})

    async def _apply_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> tuple[TopicPartition, int | None]:
        """Apply records in order; the offset to commit (None: nothing applied)."""
        next_offset: int | None = None
        for record in records:
            if not await self._apply_one(record):
                self.consumer.seek(tp, record.offset)
                break
            next_offset = record.offset + 1
        return tp, next_offset

    async def _apply_one(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Apply or dead-letter one record; False when it must be retried later."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                with tracer.start_as_current_span(
                    f"{record.topic} process",
                    context=context_from_headers(record.headers),
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "messaging.destination.name": record.topic,
                        "messaging.consumer.group.name": self.group_id,
                        "messaging.kafka.offset": record.offset,
                    },
                ):
                    await self.handle(record)
            except PoisonRecord as exc:
                return await self._dead_letter(record, exc.reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _is_transient(exc):
                    await self._pause_after(exc, "record", [record])
                    return False
                log.exception(
                    "handler failed",
                    extra={"topic": record.topic, "offset": record.offset, "attempt": attempt},
                )
                if attempt == self.max_attempts:
                    return await self._dead_letter(
                        record, f"handler failed {attempt} times: {exc!r}"
                    )
            else:
                self.healthy = True
                self.applied += 1
                return True
        return False

    async def _pause_after(
        self, exc: BaseException, what: str, records: list[ConsumerRecord[Any, Any]]
    ) -> None:
        """A transient failure: unhealthy until something applies, and a pause before the
        records are tried again."""
        self.healthy = False
        log.warning(
            f"transient failure applying a {what}, will retry",
            extra={
                "topic": records[0].topic,
                "partition": records[0].partition,
                "offsets": f"{records[0].offset}-{records[-1].offset}",
                "error": repr(exc),
            },
        )
        await asyncio.sleep(self.retry_pause)

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], reason: str) -> bool:
        letter = DeadLetter(
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            consumer_group=self.group_id,
            key=record.key.decode(errors="replace") if record.key else None,
            value=(record.value or b"").decode(errors="replace"),
            reason=reason,
            dead_lettered_at=datetime.now(UTC),
        )
        try:
            await publish(self.producer, self.dead_letter_topic, letter.key or "", letter)
        except KafkaError as exc:
            log.warning("dead-letter publish failed, will retry", extra={"error": repr(exc)})
            await asyncio.sleep(self.retry_pause)
            return False
        log.warning(
            "record dead-lettered",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
        self.dead_lettered += 1
        return True


class BatchConsumeLoop(ConsumeLoop, Generic[M]):
    """A consume loop that applies each poll's records (at most ``max_records``, from every
    partition assigned, each partition's in offset order) as one batch: one ``apply`` call, one
    transaction, then the offsets.

    Records that do not parse are dead-lettered after their batch committed. A batch that
    fails transiently is retried whole after a pause; one that fails otherwise is split in
    halves, applied in order, down to the one record that is then retried and, if it keeps
    failing, dead-lettered (``ConsumeLoop._apply_one``). The records of a partition are
    applied in offset order either way.

    ``linger_s``: after a poll that did not fill a batch, the next poll waits until this long
    after that one began, so that a steady trickle is applied in fewer, larger transactions (a
    transaction costs about the same for one record as for ten). The first record after a
    quiet spell is applied at once, and a full poll is followed at once, so a backlog drains
    at full speed."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        *,
        parse: Callable[[ConsumerRecord[Any, Any]], M],
        apply: Callable[[list[M]], Awaitable[None]],
        dead_letter_topic: str,
        group_id: str,
        max_records: int = 200,
        max_attempts: int = 3,
        retry_pause: float = 0.5,
        linger_s: float = 0.0,
    ) -> None:
        async def handle_one(record: ConsumerRecord[Any, Any]) -> None:
            await apply([parse(record)])

        super().__init__(
            consumer,
            producer,
            handle=handle_one,
            dead_letter_topic=dead_letter_topic,
            group_id=group_id,
            max_attempts=max_attempts,
            retry_pause=retry_pause,
        )
        self.parse = parse
        self.apply = apply
        self.max_records = max_records
        self.linger_s = linger_s
        self.batches = 0

    async def run(self) -> None:
        """Consume until cancelled: each poll (at most ``max_records``, across partitions, each
        partition's records in offset order) is one batch; the offsets of what it settled are
        committed after it, and each partition with records left is rewound to the first."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            polled = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
            records = [r for tp in sorted(polled) for r in polled[tp]]
            if not records:
                continue
            settled = await self._settle(records)
            offsets = {
                TopicPartition(r.topic, r.partition): r.offset + 1 for r in records[:settled]
            }
            rewound: set[TopicPartition] = set()
            for record in records[settled:]:
                tp = TopicPartition(record.topic, record.partition)
                if tp not in rewound:
                    self.consumer.seek(tp, record.offset)
                    rewound.add(tp)
            if offsets:
                try:
                    await self.consumer.commit(offsets)
                except KafkaError as exc:
                    log.warning("offset commit failed", extra={"error": repr(exc)})
            if self.linger_s and len(records) < self.max_records:
                # A trickle: what arrives meanwhile makes the next batch.
                await asyncio.sleep(max(0.0, began + self.linger_s - loop.time()))

    async def _settle(self, records: list[ConsumerRecord[Any, Any]]) -> int:
        """Apply or dead-letter the leading records; how many are done (fewer than all when
        the rest must be retried later)."""
        if len(records) == 1:
            return int(await self._apply_one(records[0]))
        started_ns = time.time_ns()
        parsed: list[M] = []
        poison: list[tuple[int, str]] = []
        for i, record in enumerate(records):
            try:
                parsed.append(self.parse(record))
            except PoisonRecord as exc:
                poison.append((i, exc.reason))
        try:
            with tracer.start_as_current_span(
                f"{records[0].topic} process batch",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.destination.name": records[0].topic,
                    "messaging.consumer.group.name": self.group_id,
                    "messaging.batch.message_count": len(records),
                },
            ):
                if parsed:
                    await self.apply(parsed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _is_transient(exc):
                await self._pause_after(exc, "batch", records)
                return 0
            log.warning(
                "batch failed, narrowing it down",
                extra={
                    "topic": records[0].topic,
                    "partition": records[0].partition,
                    "offsets": f"{records[0].offset}-{records[-1].offset}",
                    "error": repr(exc),
                },
            )
            half = len(records) // 2
            done = await self._settle(records[:half])
            if done < half:
                return done
            return half + await self._settle(records[half:])
        self.healthy = True
        self.batches += 1
        self.applied += len(parsed)
        if tracing_on():
            self._trace_records(records, started_ns)
        for i, reason in poison:
            if not await self._dead_letter(records[i], reason):
                return i  # the records after it were applied: applying them again is a no-op
        return len(records)

    def _trace_records(self, records: list[ConsumerRecord[Any, Any]], started_ns: int) -> None:
        """A span per record of an applied batch, in the record's own trace (the batch's span
        belongs to no one message's trace)."""
        for record in records:
            record_span(
                f"{record.topic} process",
                carrier_json_of(record.headers),
                {
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": self.group_id,
                    "messaging.kafka.offset": record.offset,
                    "messaging.batch.message_count": len(records),
                },
                kind=SpanKind.CONSUMER,
                start_ns=started_ns,
            )
