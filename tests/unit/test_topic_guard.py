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


async def test_after_a_failure_writers_wait_for_the_check_but_an_old_check_is_redone_behind_them(
    monkeypatch,
):
    calls = []
    release = asyncio.Event()

    async def held_check(settings, topics):
        calls.append(topics)
        await release.wait()

    monkeypatch.setattr(kafka, "ensure_topics", held_check)
    guard = kafka.TopicGuard(CommonSettings(), ["t"], max_age_s=0.3)
    await asyncio.sleep(0.35)  # the check at start is now old
    await asyncio.wait_for(asyncio.gather(*(guard.ensure_soon() for _ in range(20))), 1)
    await asyncio.sleep(0)
    assert calls == [["t"]]  # one check, started behind the writers, none of whom waited
    release.set()
    await asyncio.sleep(0.01)
    assert guard.verified

    guard.broker_failed()
    release.clear()
    waiting = asyncio.gather(*(guard.ensure_soon() for _ in range(5)))
    await asyncio.sleep(0.02)
    assert not waiting.done()  # after a failure, writers wait for the check
    release.set()
    await asyncio.wait_for(waiting, 1)
    assert calls == [["t"], ["t"]] and guard.verified
