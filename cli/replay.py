"""Replaying dead letters: each letter's record goes back on its source topic, with its key.

The replay reads the dead-letter topic in a consumer group of its own (the topic's name and
``.replay``) and commits after each
batch it republished, so a second run replays only letters that arrived since; a letter that
fails again is dead-lettered again, with its new reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from shared.events import DeadLetter

# The services' default consumer groups are named switchboard-<service>.
GROUP_PREFIX = "switchboard-"


def group_matches(wanted: str, group: str) -> bool:
    """Whether a letter of consumer group ``group`` is one ``--consumer-group wanted`` asks
    for: its full name, or a service's short name for its default group (``router`` for
    ``switchboard-router``)."""
    return group == wanted or group == f"{GROUP_PREFIX}{wanted}"


@dataclass(frozen=True)
class Outcome:
    read: int
    replayed: int


async def replay_dead_letters(
    bootstrap: str,
    dead_letter_topic: str,
    *,
    source_topic: str | None = None,
    consumer_group: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda n: None,
    join_timeout_s: float = 60.0,
) -> Outcome:
    """Republish the letters not replayed yet that match the filters, up to the end of the
    topic as it was when the replay joined."""
    group = f"{dead_letter_topic}.replay"
    consumer = AIOKafkaConsumer(
        dead_letter_topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    read = replayed = 0
    try:
        deadline = time.monotonic() + join_timeout_s
        pending: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        while not consumer.assignment():  # joining the group (a few seconds)
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not join {group} on {bootstrap}")
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                pending.setdefault(tp, []).extend(records)
        partitions = list(consumer.assignment())
        end = await consumer.end_offsets(partitions)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        while pending or await behind():
            batch = pending or await consumer.getmany(timeout_ms=500, max_records=500)
            pending = {}
            for records in batch.values():
                for record in records:
                    read += 1
                    try:
                        letter = DeadLetter.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue  # not a letter: nothing to put back
                    if source_topic and letter.source_topic != source_topic:
                        continue
                    if consumer_group and not group_matches(consumer_group, letter.consumer_group):
                        continue
                    if not dry_run:
                        await producer.send_and_wait(
                            letter.source_topic,
                            letter.value.encode(),
                            key=letter.key.encode() if letter.key else None,
                        )
                    replayed += 1
                progress(read)
            if not dry_run:
                await consumer.commit()  # only after every letter of the batch is back
    finally:
        await producer.stop()
        await consumer.stop()
    return Outcome(read=read, replayed=replayed)
