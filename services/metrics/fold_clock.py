"""How far this process has folded the conversation-events topic, in event time, per
partition: the SLA sweeps judge at that time, not at the wall clock, so that a backlog (after
downtime, or a replay) is judged as it happened. A partition whose consumer has caught up
(everything it fetched is folded, and nothing more is on the broker) is folded up to now."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


class FoldClock:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._folded: dict[int, datetime] = {}

    def folded(self, partition: int, at: datetime) -> None:
        """An event of ``partition`` that happened ``at`` is folded (its transaction committed)."""
        latest = self._folded.get(partition)
        if latest is None or at > latest:
            self._folded[partition] = at

    def readings(self, caught_up: Iterable[int], now: datetime) -> dict[int, datetime]:
        """The event time each partition this process knows is folded up to: ``now`` for those
        caught up, else the latest event folded."""
        return dict(self._folded) | dict.fromkeys(caught_up, now)
