"""The long-poll waiter registry: a cap per agent, the oldest answered first, nothing kept."""

from services.router.wakeups import AgentWakeups


def test_a_wait_past_the_cap_supersedes_the_oldest_and_entries_go_with_their_waiters():
    wakeups = AgentWakeups("postgresql://unused", max_waits_per_agent=2)
    with wakeups.waiting("a") as first, wakeups.waiting("a") as second:
        assert not first.woken.is_set()
        with wakeups.waiting("a") as third, wakeups.waiting("b") as other:
            assert first.superseded and first.woken.is_set()
            assert not (second.superseded or third.superseded or other.superseded)
            wakeups._notify("a")
            assert second.woken.is_set() and third.woken.is_set() and not other.woken.is_set()
            assert wakeups.waiting_agents() == 2
        assert wakeups.waiting_agents() == 1
    assert wakeups.waiting_agents() == 0


def test_a_reconnected_listener_wakes_every_waiter():
    wakeups = AgentWakeups("postgresql://unused", max_waits_per_agent=4)
    with wakeups.waiting("a") as a, wakeups.waiting("b") as b:
        wakeups._wake_all()
        assert a.woken.is_set() and b.woken.is_set()
        assert not (a.superseded or b.superseded)
