"""A batch of conversation events folded in memory (pure): what the store holds of each
conversation the batch touches comes in, the rows to write come out, and writing them leaves
what folding the same events one at a time (``MetricsStore.apply``) leaves.

Per conversation, that is one refold: the events of a batch all come after the entry before
the earliest of them, so the timeline is folded once from that entry's ``Fold`` over the
entries kept after it and the batch's own, in timeline order."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.metrics.calendars import BusinessCalendar
from services.metrics.facts import Entry, Facts, Fold, Moment, Wait, conclude, refold, timed
from services.metrics.facts import timeline_order as _order
from shared.events import (
    AgentReplied,
    AnyConversationEvent,
    Assigned,
    Classified,
    ConversationOpened,
    MessageReceived,
    Offered,
    OfferTimedOut,
    Overflowed,
    Queued,
    Reopened,
    Resolved,
    Transferred,
)

MOMENTS: dict[type, Moment] = {
    ConversationOpened: Moment.OPENED,
    Reopened: Moment.REOPENED,
    MessageReceived: Moment.MESSAGE,
    Transferred: Moment.TRANSFERRED,
    OfferTimedOut: Moment.OFFER_TIMED_OUT,
    Queued: Moment.QUEUED,
    Offered: Moment.OFFERED,
    Assigned: Moment.ASSIGNED,
    AgentReplied: Moment.REPLIED,
    Resolved: Moment.RESOLVED,
}
# Events that change a conversation's dimensions rather than (or as well as) its timeline.
DIMENSION_EVENTS = (ConversationOpened, Classified)
# What each answered wait copies of its conversation, so that a report scans one table.
WAIT_COPY = ("opened_at", "channel", "priority", "skill", "language", "customer_tier", "team")
BEGINNING, END = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
# Events are told apart by their exact type: isinstance of a pydantic model goes through
# ABCMeta.__instancecheck__, 5% of the batch fold's CPU when it was used here.
_FOLDED = frozenset([*MOMENTS, *DIMENSION_EVENTS])


def moment_of(event: AnyConversationEvent) -> Moment | None:
    """The timeline moment of an event, if it has one (an overflow only at its last stage:
    the conversation is stuck if it still waits after it)."""
    if type(event) is Overflowed:
        return Moment.STUCK if event.final else None
    return MOMENTS.get(type(event))


def folded(event: AnyConversationEvent) -> bool:
    """Whether an event changes anything a report or a live view shows (else it is only
    recorded as processed: escalations, earlier overflow stages)."""
    return type(event) in _FOLDED or (type(event) is Overflowed and event.final)


def entry_of(event: AnyConversationEvent) -> Entry | None:
    """The timeline entry of an event (times in UTC, as the database hands them back)."""
    moment = moment_of(event)
    if moment is None:
        return None
    # The fields themselves: getattr of a field a model lacks goes through pydantic's
    # __getattr__ and an AttributeError.
    fields = vars(event)
    at = event.occurred_at.astimezone(UTC)
    return Entry(moment, at, fields.get("agent_id"), fields.get("team"))


def since_of(entries: Sequence[Entry | None]) -> datetime:
    """Where a conversation's batch starts folding: the earliest of its events' entries (END
    when the batch only changes dimensions, which folds nothing again)."""
    return min((e.at for e in entries if e is not None), default=END)


@dataclass(frozen=True)
class Dimensions:
    customer_tier: str | None = None
    priority: str | None = None
    skill: str | None = None
    language: str | None = None
    classified_at: datetime | None = None

    def after(self, event: AnyConversationEvent) -> Dimensions:
        """The dimensions after an event: the tier of the latest opening in arrival order, the
        classification of the latest time (arrival order between equal times)."""
        # Built whole rather than with dataclasses.replace, which was 3 times slower (the
        # batch fold does this for two events of every conversation).
        if type(event) is ConversationOpened:
            tier = event.customer_tier.value
            return Dimensions(tier, self.priority, self.skill, self.language, self.classified_at)
        if type(event) is Classified and (
            self.classified_at is None or self.classified_at <= event.occurred_at
        ):
            return Dimensions(
                self.customer_tier,
                event.priority.value,
                event.skill.value,
                event.language,
                event.occurred_at.astimezone(UTC),
            )
        return self


@dataclass(frozen=True)
class Kept:
    """What the store holds of a conversation, read for a batch from ``since`` on."""

    conversation_id: uuid.UUID
    channel: str
    dimensions: Dimensions
    calendar: str | None  # the calendar its waits were timed in
    wait_copy: dict[str, Any] | None  # what its latest wait copies (None: no wait yet)
    since: datetime
    before: Fold | None  # the fold of the entry before ``since``; None: that entry has none
    # The entries at or after ``since`` (any order): event id, entry, waits its fold counted.
    after: list[tuple[uuid.UUID, Entry, int | None]] = field(default_factory=list)


@dataclass(frozen=True)
class TimelineRow:
    event_id: uuid.UUID
    conversation_id: uuid.UUID
    entry: Entry
    state: Fold


@dataclass(frozen=True)
class Plan:
    """What a batch writes for one conversation."""

    conversation_id: uuid.UUID
    facts: Facts
    calendar: str | None
    dimensions: Dimensions
    timeline: list[TimelineRow]  # entries new and folded again, with their folds
    wait_copy: dict[str, Any]
    delete_waits_from: int | None  # waits from this seq on were answered again
    copy_waits_below: int | None  # waits below this seq copy the conversation anew
    first_wait: int  # the seq of ``waits[0]``
    waits: list[Wait]


class WholeTimeline(Exception):
    """The conversation must be folded from its first entry: an entry the batch folds from or
    again has no fold kept (it dates from before folds were), or its waits are now timed in
    another calendar (a transfer to another team)."""


def plan(
    kept: Kept,
    events: Sequence[AnyConversationEvent],
    entries: Sequence[Entry | None],
    calendars: list[dict[str, Any]],
    choose: Callable[..., BusinessCalendar | None],
) -> Plan:
    """Fold a conversation's new events (first time seen, in arrival order; ``entries``:
    their ``entry_of``) after what the store keeps of it; ``choose(calendars, team=,
    channel=)`` picks the calendar. Raises WholeTimeline when ``kept`` does not start early
    enough."""
    whole = kept.since == BEGINNING
    if kept.before is None or (not whole and any(w is None for _, _, w in kept.after)):
        raise WholeTimeline
    dimensions = kept.dimensions
    new: list[tuple[uuid.UUID, Entry, int | None]] = []
    for event, entry in zip(events, entries, strict=True):
        dimensions = dimensions.after(event)
        if entry is not None:
            new.append((event.event_id, entry, None))
    rows = sorted([*kept.after, *new], key=lambda r: (*_order(r[1]), r[0]))
    folds, answers = refold(kept.before, [entry for _, entry, _ in rows])
    last = folds[-1] if folds else kept.before
    calendar = choose(calendars, team=last.team, channel=kept.channel)
    name = calendar.name if calendar else None
    if not whole and name != kept.calendar:
        raise WholeTimeline
    waits = [timed(a, calendar) for a in answers]
    facts = conclude(last, waits, calendar)
    first = kept.before.waits
    answered = max((w for _, _, w in kept.after if w is not None), default=first)
    copy = vars(dimensions) | {
        "channel": kept.channel,
        "opened_at": facts.opened_at,
        "team": facts.team,
    }
    copy = {k: copy[k] for k in WAIT_COPY}
    return Plan(
        conversation_id=kept.conversation_id,
        facts=facts,
        calendar=name,
        dimensions=dimensions,
        timeline=[
            TimelineRow(event_id, kept.conversation_id, entry, fold)
            for (event_id, entry, _), fold in zip(rows, folds, strict=True)
        ],
        wait_copy=copy,
        delete_waits_from=first if whole or answered > first else None,
        copy_waits_below=first
        if not whole and first > 0 and kept.wait_copy is not None and kept.wait_copy != copy
        else None,
        first_wait=first,
        waits=waits,
    )
