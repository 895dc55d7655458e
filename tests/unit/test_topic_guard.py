import asyncio

from shared import kafka
from shared.settings import CommonSettings


async def test_a_topic_check_runs_once_however_many_callers_wait_for_it(monkeypatch):
    calls = []

    async def slow_check(settings, topics):
        calls.append(topics)
        await asyncio.sleep(0.05)

    monkeypatch.setattr(kafka, "ensure_topics", slow_check)
    guard = kafka.TopicGuard(CommonSettings(), ["t"])
    guard.broker_failed()
    await asyncio.gather(*(guard.ensure() for _ in range(50)))
    assert calls == [["t"]] and guard.verified
