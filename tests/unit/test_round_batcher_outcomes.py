"""RoundBatcher answers each caller with its own batch's outcome: a partition whose batch
fails fails only its records (the broker's side is tested on the real broker in
tests/integration/test_round_batcher.py; a failure of one partition only is not something
the local broker can be made to do, so the producer is a stand-in here)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from shared.kafka import RoundBatcher, key_partitioner


class _Builder:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    def append(self, *, timestamp: Any, key: bytes, value: bytes, headers: Any) -> object:
        self.records.append(value)
        return object()


class _Producer:
    """Two partitions; partition ``failing``'s batches fail."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.sent: dict[int, list[bytes]] = {}

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> _Builder:
        return _Builder()

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        self.sent.setdefault(partition, []).extend(batch.records)
        ack = asyncio.get_running_loop().create_future()
        if partition == self.failing:
            ack.set_exception(KafkaTimeoutError())
        else:
            ack.set_result(None)
        return ack


async def test_a_failed_partition_fails_only_its_own_records():
    keys = [f"k{i}".encode() for i in range(20)]
    failing = key_partitioner(keys[0], [0, 1], [0, 1])
    producer = _Producer(failing)
    batcher = RoundBatcher(producer, "t", timeout_s=5)  # type: ignore[arg-type]
    acks = [batcher.add(k, k, []) for k in keys]
    outcomes = await asyncio.gather(*acks, return_exceptions=True)
    for key, outcome in zip(keys, outcomes, strict=True):
        if key_partitioner(key, [0, 1], [0, 1]) == failing:
            assert isinstance(outcome, KafkaTimeoutError), key
        else:
            assert outcome is None, key
    assert sorted(producer.sent[1 - failing] + producer.sent[failing]) == sorted(keys)
    with pytest.raises(KafkaTimeoutError):
        await acks[0]
