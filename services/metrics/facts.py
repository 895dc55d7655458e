"""A conversation's facts from its timeline (pure): the moments that matter, folded into the
times ops report. The same timeline gives the same facts whatever order its events arrived
in, so a replayed or late event never changes an answer.

The fold goes entry by entry in timeline order, and what it knows after an entry is a small
``Fold``. The store keeps the ``Fold`` after each entry, so a new entry is folded from the one
before it and the entries after it (none when it arrives in order): folding an event costs the
same whatever the conversation's length.

The same fold keeps where the conversation stands with the router now, for the live views:
in the queue (and since when, as the router ages it), or held by an agent (offered or
assigned), or neither (resolved, or passing from one to the other within a router
transaction). The router stamps every event of one transaction with one time, so the moments
at one instant are ordered as the router emits them: a release before the queueing, the
queueing before the offer or assignment that follows it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.metrics.calendars import BusinessCalendar


class Moment(StrEnum):
    """What happened; the order breaks ties between moments at the same instant."""

    OPENED = "opened"
    REOPENED = "reopened"
    MESSAGE = "message"  # from the customer
    TRANSFERRED = "transferred"  # taken from its agent (to another agent or a skill's queue)
    OFFER_TIMED_OUT = "offer_timed_out"  # taken from the agent who did not accept in time
    QUEUED = "queued"  # waiting for an agent (again)
    # Its last overflow stage widened its need (the router then tries it at once: an
    # assignment at the same instant comes after).
    STUCK = "stuck"
    OFFERED = "offered"  # given to an agent who must accept: holds the agent's slot
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


def timeline_order(entry: Entry) -> tuple[datetime, int, str, str]:
    """Where an entry stands in its timeline (entries equal by this fold alike)."""
    return entry.at, _TIE_ORDER[entry.moment], entry.agent_id or "", entry.team or ""


class WaitKind(StrEnum):
    FIRST = "first"  # the first customer message of an episode → the first agent reply
    NEXT = "next"  # a later customer message → the next agent reply


@dataclass(frozen=True)
class Answer:
    """A customer wait that an agent's reply ended, before it is timed in a calendar."""

    kind: WaitKind
    episode: int  # 0 for the conversation as opened, 1 after the first reopen, ...
    started_at: datetime
    replied_at: datetime
    agent_id: str | None = None  # who replied


@dataclass(frozen=True)
class Wait:
    """A customer waiting for an agent, answered: first response or next reply."""

    kind: WaitKind
    episode: int
    started_at: datetime
    replied_at: datetime
    seconds: float
    business_seconds: float
    agent_id: str | None = None  # who replied


@dataclass(frozen=True)
class Fold:
    """What the fold knows after some entries of a timeline: the facts so far, and what the
    next entries need (whether a customer is waiting and since when, whether this episode had
    an answer, how many waits were answered before)."""

    opened_at: datetime | None = None
    first_message_at: datetime | None = None
    first_assigned_at: datetime | None = None
    first_response_at: datetime | None = None  # of the conversation as opened (SLA sweep)
    resolved_at: datetime | None = None  # the latest resolution, None while (re)open
    agent_id: str | None = None  # the agent assigned last
    team: str | None = None  # that agent's team when assigned
    assignments: int = 0
    reopens: int = 0  # also the current episode
    customer_messages: int = 0
    agent_replies: int = 0
    answered: bool = False  # this episode had an answered wait
    waiting_since: datetime | None = None
    waits: int = 0  # answered so far
    # Where the conversation stands with the router (the live views):
    held_by: str | None = None  # the agent whose slot it holds, offered or assigned
    queued: bool = False  # waiting in the queue
    queued_at: datetime | None = None  # its age in the queue (kept when it is put back)
    queue_reset: bool = False  # reopened: its age starts again when the router routes it
    stuck_at: datetime | None = None  # its last overflow stage (stuck while queued); reopen clears

    def then(self, entry: Entry) -> tuple[Fold, Answer | None]:
        """The fold after one more entry (the next in timeline order), and the wait it
        answered if any."""
        change: dict[str, Any] = {}
        answer = None
        match entry.moment:
            case Moment.OPENED:
                change["opened_at"] = self.opened_at or entry.at
                # The router opens a conversation in the queue, at the customer's message.
                change["queued_at"] = self.queued_at or entry.at
                if self.opened_at is None and self.held_by is None and self.resolved_at is None:
                    change["queued"] = True
            case Moment.REOPENED:
                change |= dict(reopens=self.reopens + 1, answered=False, waiting_since=None)
                change["resolved_at"] = None
                change |= dict(held_by=None, queued=True, queue_reset=True, stuck_at=None)
            case Moment.TRANSFERRED | Moment.OFFER_TIMED_OUT:
                change |= dict(held_by=None, queued=False)
            case Moment.QUEUED:
                change |= dict(held_by=None, queued=True, **self._queue_age(entry))
            case Moment.STUCK:
                change["stuck_at"] = self.stuck_at or entry.at
            case Moment.OFFERED:
                change |= dict(held_by=entry.agent_id, queued=False, **self._queue_age(entry))
            case Moment.MESSAGE:
                change["customer_messages"] = self.customer_messages + 1
                change["first_message_at"] = self.first_message_at or entry.at
                change["waiting_since"] = self.waiting_since or entry.at
            case Moment.ASSIGNED:
                change["assignments"] = self.assignments + 1
                change["first_assigned_at"] = self.first_assigned_at or entry.at
                change |= dict(agent_id=entry.agent_id, team=entry.team)
                change |= dict(held_by=entry.agent_id, queued=False, **self._queue_age(entry))
            case Moment.REPLIED:
                change["agent_replies"] = self.agent_replies + 1
                if self.reopens == 0:
                    change["first_response_at"] = self.first_response_at or entry.at
                if self.waiting_since is not None:
                    kind = WaitKind.NEXT if self.answered else WaitKind.FIRST
                    answer = Answer(
                        kind, self.reopens, self.waiting_since, entry.at, entry.agent_id
                    )
                    change |= dict(answered=True, waiting_since=None, waits=self.waits + 1)
            case Moment.RESOLVED:
                change["resolved_at"] = entry.at
                change["waiting_since"] = None  # resolved without an answer: no reply time
                change |= dict(held_by=None, queued=False)
        return self._but(change), answer

    def _queue_age(self, entry: Entry) -> dict[str, Any]:
        """The router's first routing after a reopen starts the conversation's queue age
        anew (it stamps that, not the customer's message); other routings keep it."""
        if self.queue_reset or self.queued_at is None:
            return {"queued_at": entry.at, "queue_reset": False}
        return {}

    def _but(self, change: dict[str, Any]) -> Fold:
        """This fold with ``change`` made: ``dataclasses.replace`` without __init__, whose
        field-by-field object.__setattr__ (frozen) made it 3 times slower, and the batch fold
        does it for every entry."""
        fold = object.__new__(Fold)
        fold.__dict__.update(self.__dict__, **change)
        return fold


def refold(before: Fold, entries: Sequence[Entry]) -> tuple[list[Fold], list[Answer]]:
    """Fold entries (in timeline order) after ``before``: the fold after each, and the waits
    they answered (numbered from ``before.waits``)."""
    folds: list[Fold] = []
    answers: list[Answer] = []
    fold = before
    for entry in entries:
        fold, answer = fold.then(entry)
        folds.append(fold)
        if answer is not None:
            answers.append(answer)
    return folds, answers


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


def timed(answer: Answer, calendar: BusinessCalendar | None = None) -> Wait:
    """An answered wait with its calendar and business seconds."""
    seconds, business = _elapsed(answer.started_at, answer.replied_at, calendar)
    assert seconds is not None and business is not None
    return Wait(
        answer.kind,
        answer.episode,
        answer.started_at,
        answer.replied_at,
        seconds,
        business,
        answer.agent_id,
    )


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
    held_by: str | None = None  # the agent whose slot it holds now (offered or assigned)
    queued_since: datetime | None = None  # in the queue now, at this age; else None
    stuck_since: datetime | None = None  # in the queue now after its last overflow stage
    resolution_s: float | None = None
    resolution_bs: float | None = None
    queue_wait_s: float | None = None
    queue_wait_bs: float | None = None
    waits: tuple[Wait, ...] = field(default=())

    @property
    def reassignments(self) -> int:
        return max(self.assignments - 1, 0)


def conclude(
    fold: Fold, waits: Iterable[Wait] = (), calendar: BusinessCalendar | None = None
) -> Facts:
    """The facts of a timeline folded to its end (``waits``: its answered waits, timed)."""
    resolution = _elapsed(fold.opened_at, fold.resolved_at, calendar)
    queue_wait = _elapsed(fold.opened_at, fold.first_assigned_at, calendar)
    return Facts(
        opened_at=fold.opened_at,
        first_message_at=fold.first_message_at,
        first_assigned_at=fold.first_assigned_at,
        first_response_at=fold.first_response_at,
        resolved_at=fold.resolved_at,
        agent_id=fold.agent_id,
        team=fold.team,
        assignments=fold.assignments,
        reopens=fold.reopens,
        customer_messages=fold.customer_messages,
        agent_replies=fold.agent_replies,
        held_by=fold.held_by,
        queued_since=fold.queued_at if fold.queued else None,
        stuck_since=fold.stuck_at if fold.queued else None,
        resolution_s=resolution[0],
        resolution_bs=resolution[1],
        queue_wait_s=queue_wait[0],
        queue_wait_bs=queue_wait[1],
        waits=tuple(waits),
    )


def derive(entries: Iterable[Entry], calendar: BusinessCalendar | None = None) -> Facts:
    """Fold a conversation's timeline (in any order) into its facts."""
    folds, answers = refold(Fold(), sorted(entries, key=timeline_order))
    last = folds[-1] if folds else Fold()
    return conclude(last, (timed(a, calendar) for a in answers), calendar)
