"""A conversation's facts from its timeline (pure): the moments that matter, folded into the
times ops report. The same timeline gives the same facts whatever order its events arrived
in, so a replayed or late event never changes an answer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.metrics.calendars import BusinessCalendar


class Moment(StrEnum):
    """What happened; the order breaks ties between moments at the same instant."""

    OPENED = "opened"
    REOPENED = "reopened"
    MESSAGE = "message"  # from the customer
    ASSIGNED = "assigned"
    REPLIED = "replied"  # by an agent
    RESOLVED = "resolved"


_TIE_ORDER = {m: i for i, m in enumerate(Moment)}


@dataclass(frozen=True)
class Entry:
    moment: Moment
    at: datetime
    agent_id: str | None = None
    team: str | None = None  # of the agent assigned


class WaitKind(StrEnum):
    FIRST = "first"  # the first customer message of an episode → the first agent reply
    NEXT = "next"  # a later customer message → the next agent reply


@dataclass(frozen=True)
class Wait:
    """A customer waiting for an agent, answered: first response or next reply."""

    kind: WaitKind
    episode: int  # 0 for the conversation as opened, 1 after the first reopen, ...
    started_at: datetime
    replied_at: datetime
    seconds: float
    business_seconds: float
    agent_id: str | None = None  # who replied


@dataclass(frozen=True)
class Facts:
    """Everything metrics reports of one conversation (measures in seconds, None when the
    moment has not come yet)."""

    opened_at: datetime | None = None
    first_message_at: datetime | None = None
    first_assigned_at: datetime | None = None
    first_response_at: datetime | None = None  # of the conversation as opened (SLA sweep)
    resolved_at: datetime | None = None  # the latest resolution, None while (re)open
    agent_id: str | None = None  # the agent assigned last
    team: str | None = None  # that agent's team when assigned
    assignments: int = 0
    reopens: int = 0
    customer_messages: int = 0
    agent_replies: int = 0
    resolution_s: float | None = None
    resolution_bs: float | None = None
    queue_wait_s: float | None = None
    queue_wait_bs: float | None = None
    waits: tuple[Wait, ...] = field(default=())

    @property
    def reassignments(self) -> int:
        return max(self.assignments - 1, 0)


def _elapsed(
    start: datetime | None, end: datetime | None, calendar: BusinessCalendar | None
) -> tuple[float | None, float | None]:
    """(calendar seconds, business seconds) from start to end; a skewed clock counts as 0. A
    desk without a calendar works around the clock: business time is calendar time."""
    if start is None or end is None:
        return None, None
    seconds = max((end - start).total_seconds(), 0.0)
    if calendar is None:
        return seconds, seconds
    return seconds, calendar.business_seconds(start, end)


def derive(entries: Iterable[Entry], calendar: BusinessCalendar | None = None) -> Facts:
    """Fold a conversation's timeline (in any order) into its facts."""
    timeline = sorted(entries, key=lambda e: (e.at, _TIE_ORDER[e.moment], e.agent_id or ""))
    opened_at = first_message_at = first_assigned_at = first_response_at = None
    resolved_at: datetime | None = None
    agent_id: str | None = None
    team: str | None = None
    assignments = reopens = customer_messages = agent_replies = 0
    waits: list[Wait] = []
    episode, answered, waiting_since = 0, False, None
    for entry in timeline:
        match entry.moment:
            case Moment.OPENED:
                opened_at = opened_at or entry.at
            case Moment.REOPENED:
                reopens += 1
                episode, answered, waiting_since = reopens, False, None
                resolved_at = None
            case Moment.MESSAGE:
                customer_messages += 1
                first_message_at = first_message_at or entry.at
                waiting_since = waiting_since or entry.at
            case Moment.ASSIGNED:
                assignments += 1
                first_assigned_at = first_assigned_at or entry.at
                agent_id, team = entry.agent_id, entry.team
            case Moment.REPLIED:
                agent_replies += 1
                if episode == 0:
                    first_response_at = first_response_at or entry.at
                if waiting_since is not None:
                    seconds, business = _elapsed(waiting_since, entry.at, calendar)
                    assert seconds is not None and business is not None
                    waits.append(
                        Wait(
                            WaitKind.NEXT if answered else WaitKind.FIRST,
                            episode,
                            waiting_since,
                            entry.at,
                            seconds,
                            business,
                            entry.agent_id,
                        )
                    )
                    answered, waiting_since = True, None
            case Moment.RESOLVED:
                resolved_at = entry.at
                waiting_since = None  # resolved without an answer: no reply time to count
    resolution = _elapsed(opened_at, resolved_at, calendar)
    queue_wait = _elapsed(opened_at, first_assigned_at, calendar)
    return Facts(
        opened_at=opened_at,
        first_message_at=first_message_at,
        first_assigned_at=first_assigned_at,
        first_response_at=first_response_at,
        resolved_at=resolved_at,
        agent_id=agent_id,
        team=team,
        assignments=assignments,
        reopens=reopens,
        customer_messages=customer_messages,
        agent_replies=agent_replies,
        resolution_s=resolution[0],
        resolution_bs=resolution[1],
        queue_wait_s=queue_wait[0],
        queue_wait_bs=queue_wait[1],
        waits=tuple(waits),
    )
