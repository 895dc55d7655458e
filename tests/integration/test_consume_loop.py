"""The consume loop's contract, on the real broker: an offset is committed only once the record
was applied; a failure of the outside world is retried, never dead-lettered or skipped."""

import asyncio
import json

from aiokafka import TopicPartition
from sqlalchemy.exc import OperationalError

from shared.consume import BatchConsumeLoop, ConsumeLoop, PoisonRecord
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.settings import CommonSettings
from tests.conftest import eventually, produce, read_topic


async def test_offsets_follow_applied_records_and_transient_failures_are_retried(broker, topics):
    applied: list[bytes] = []
    failures = {"left": 2}

    async def handle(record):
        if record.value == b"two" and failures["left"]:
            failures["left"] -= 1
            raise OperationalError("INSERT ...", {}, ConnectionError("database went away"))
        applied.append(record.value)

    consumer, producer = await _started(broker, topics, "contract")
    loop = ConsumeLoop(
        consumer,
        producer,
        handle=handle,
        dead_letter_topic=topics.dead_letter,
        group_id="contract",
        retry_pause=0.05,
    )
    task = asyncio.create_task(loop.run())
    try:
        await produce(
            broker.bootstrap, topics.inbound, [("k", b"one"), ("k", b"two"), ("k", b"three")]
        )

        async def all_applied():
            return applied == [b"one", b"two", b"three"]

        await eventually(all_applied, what="every record applied once, in order")

        async def committed():
            return await consumer.committed(TopicPartition(topics.inbound, 0)) == 3

        await eventually(committed, what="offset 3 committed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    assert failures["left"] == 0
    assert await read_topic(broker.bootstrap, topics.dead_letter) == []


async def test_a_record_whose_handler_keeps_failing_is_dead_lettered_with_the_reason(
    broker, topics
):
    seen: list[bytes] = []

    async def handle(record):
        if record.value == b"bug":
            raise KeyError("customer")
        seen.append(record.value)

    consumer, producer = await _started(broker, topics, "bugs")
    loop = ConsumeLoop(
        consumer, producer, handle=handle, dead_letter_topic=topics.dead_letter, group_id="bugs"
    )
    task = asyncio.create_task(loop.run())
    try:
        await produce(broker.bootstrap, topics.inbound, [("k", b"bug"), ("k", b"fine")])

        async def moved_on():
            return seen == [b"fine"]

        await eventually(moved_on, what="the next record applied")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    letters = [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.dead_letter)]
    assert len(letters) == 1
    assert letters[0]["value"] == "bug" and "KeyError" in letters[0]["reason"]
    assert letters[0]["source_offset"] == 0 and letters[0]["consumer_group"] == "bugs"


async def _run_batches(broker, topics, group, apply, values, *, parse=lambda r: r.value):
    """Produce ``values`` on one partition and run a BatchConsumeLoop over them until every
    offset is committed; the loop's counters."""
    consumer, producer = await _started(broker, topics, group)
    loop = BatchConsumeLoop(
        consumer,
        producer,
        parse=parse,
        apply=apply,
        dead_letter_topic=topics.dead_letter,
        group_id=group,
        max_records=50,
        retry_pause=0.05,
    )
    task = asyncio.create_task(loop.run())
    try:
        await produce(broker.bootstrap, topics.inbound, [("k", v) for v in values])

        async def committed():
            return await consumer.committed(TopicPartition(topics.inbound, 0)) == len(values)

        await eventually(committed, what=f"offset {len(values)} committed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    return loop


async def test_a_failing_batch_is_narrowed_to_its_bad_record_and_the_partition_goes_on(
    broker, topics
):
    values = [f"m{i}".encode() for i in range(30)]
    values[17] = b"bug"
    values[23] = b"unparseable"
    applied: list[bytes] = []

    def parse(record):
        if record.value == b"unparseable":
            raise PoisonRecord("not a message")
        return record.value

    async def apply(batch):
        if b"bug" in batch:  # as a transaction would: nothing of the batch is kept
            raise KeyError("customer")
        applied.extend(batch)

    loop = await _run_batches(broker, topics, "narrowing", apply, values, parse=parse)
    assert applied == [v for v in values if v not in (b"bug", b"unparseable")]
    letters = [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.dead_letter)]
    assert sorted((x["value"], x["source_offset"]) for x in letters) == [
        ("bug", 17),
        ("unparseable", 23),
    ]
    assert "KeyError" in next(x["reason"] for x in letters if x["value"] == "bug")
    assert loop.applied == 28


async def test_a_batch_that_fails_transiently_is_retried_whole_and_nothing_dead_lettered(
    broker, topics
):
    values = [f"m{i}".encode() for i in range(10)]
    applied: list[bytes] = []
    failures = {"left": 2}

    async def apply(batch):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("INSERT ...", {}, ConnectionError("database went away"))
        applied.extend(batch)

    await _run_batches(broker, topics, "transient-batches", apply, values)
    assert applied == values
    assert await read_topic(broker.bootstrap, topics.dead_letter) == []


async def test_with_a_linger_a_trickle_comes_in_fewer_batches_and_the_first_record_at_once(
    broker, topics
):
    batches: list[tuple[float, list[bytes]]] = []
    clock = asyncio.get_running_loop().time

    async def apply(values):
        batches.append((clock(), list(values)))

    consumer, producer = await _started(broker, topics, "linger")
    loop = BatchConsumeLoop(
        consumer,
        producer,
        parse=lambda r: r.value,
        apply=apply,
        dead_letter_topic=topics.dead_letter,
        group_id="linger",
        max_records=500,
        linger_s=0.5,
    )
    task = asyncio.create_task(loop.run())
    try:
        await eventually(lambda: _assigned(consumer), what="partition assigned")
        sent_first = clock()
        await producer.send_and_wait(topics.inbound, b"0", key=b"k")
        for i in range(1, 20):  # a trickle: one record every 50 ms for a second
            await asyncio.sleep(0.05)
            await producer.send_and_wait(topics.inbound, str(i).encode(), key=b"k")

        async def all_applied():
            return sum(len(v) for _, v in batches) == 20

        await eventually(all_applied, what="the trickle applied")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    assert [v for _, values in batches for v in values] == [str(i).encode() for i in range(20)]
    first_at, first = batches[0]
    assert first == [b"0"] and first_at - sent_first < 0.4  # no wait after a quiet spell
    # 20 records over about a second, a poll at most every 0.5 s: a handful of batches
    # rather than one a record.
    assert len(batches) <= 5, [len(v) for _, v in batches]


async def _assigned(consumer) -> bool:
    return bool(consumer.assignment())


async def _started(broker, topics, group):
    """A consumer of the inbound topic (one partition) in ``group`` and a producer, started."""
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        topics=topics,
        kafka_partitions=1,
        kafka_session_timeout_ms=3000,
    )
    await ensure_topics(settings)
    consumer = make_consumer(settings, topics.inbound, group_id=group)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    return consumer, producer
