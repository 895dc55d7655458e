"""The scrape's counters become histograms and counters, and the fold clock says how far
each partition is folded: pure functions of their inputs."""

from datetime import UTC, datetime, timedelta

from services.metrics.exposition import BUCKETS_S, ScrapeCount, aggregates
from services.metrics.fold_clock import FoldClock

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_bucket_counts_become_cumulative_histograms_with_their_sums():
    rows = [
        ScrapeCount("first_response_s", "chat", "urgent", 0, 2, 7.0),  # two at or under 5 s
        ScrapeCount("first_response_s", "chat", "urgent", 2, 1, 30.0),  # one in (10, 30]
        ScrapeCount("first_response_s", "chat", "urgent", len(BUCKETS_S), 1, 10**6),  # past all
        ScrapeCount("resolution_s", "email", "low", 3, 0, 0.0),  # a label set back to nothing
    ]
    histograms, _, _ = aggregates(rows)
    (row,) = histograms["first_response_s"]
    assert row.labels == ("chat", "urgent")
    assert row.cumulative[:4] == [2, 2, 3, 3] and row.cumulative[-1] == 3
    assert row.count == 4 and row.total == 7.0 + 30.0 + 10**6
    assert histograms["resolution_s"] == []


def test_counters_are_per_channel_and_breaches_per_channel_and_priority():
    rows = [
        ScrapeCount("opened", "chat", "urgent", 0, 3, 0.0),
        ScrapeCount("opened", "chat", "low", 0, 2, 0.0),
        ScrapeCount("messages", "chat", "low", 0, 9, 0.0),
        ScrapeCount("resolved", "x", "unclassified", 0, 1, 0.0),
        ScrapeCount("breached", "chat", "urgent", 0, 1, 0.0),
        ScrapeCount("breached", "chat", "low", 0, 0, 0.0),
    ]
    _, counts, breaches = aggregates(rows)
    assert counts == {
        "chat": {"opened": 5, "resolved": 0, "messages": 9},
        "x": {"opened": 0, "resolved": 1, "messages": 0},
    }
    assert breaches == {("chat", "urgent"): 1}


def test_the_fold_clock_keeps_each_partitions_latest_event_and_now_once_caught_up():
    clock = FoldClock("events")
    clock.folded(0, T + timedelta(seconds=5))
    clock.folded(0, T)  # an event of an earlier time folded later: the clock stays
    clock.folded(1, T + timedelta(seconds=2))
    now = T + timedelta(minutes=1)
    assert clock.readings([], now) == {0: T + timedelta(seconds=5), 1: T + timedelta(seconds=2)}
    assert clock.readings([1, 2], now) == {0: T + timedelta(seconds=5), 1: now, 2: now}
