"""Business-hours calendars (pure): a time zone, weekly opening hours and holidays, and how
many seconds of business time lie between two instants."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A conversation open longer than this is counted to this horizon only (guards a runaway loop
# on a bad timestamp; no support figure spans more than a few months).
MAX_SPAN = timedelta(days=3 * 366)


class CalendarError(ValueError):
    """A calendar definition that cannot be used (unknown zone, bad or overlapping hours)."""


def _minutes(hhmm: str) -> int:
    try:
        hours, minutes = hhmm.split(":")
        value = int(hours) * 60 + int(minutes)
    except ValueError:
        raise CalendarError(f"{hhmm!r} is not a time of day (HH:MM)") from None
    if not 0 <= int(minutes) < 60 or not 0 <= value <= 24 * 60:
        raise CalendarError(f"{hhmm!r} is not a time of day between 00:00 and 24:00")
    return value


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours in a time zone: per weekday (0 = Monday) a list of [open, close) minute
    ranges of the local wall clock, and holidays (local dates) when the desk is closed."""

    name: str
    time_zone: str
    weekly: Mapping[int, tuple[tuple[int, int], ...]]
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(
        cls,
        name: str,
        time_zone: str,
        weekly: Mapping[str, Sequence[Sequence[str]]],
        holidays: Sequence[date] = (),
    ) -> BusinessCalendar:
        """A calendar from its API form: ``{"mon": [["09:00", "18:00"]], ...}``; raises
        CalendarError saying what is wrong."""
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"unknown time zone {time_zone!r}") from None
        unknown = sorted(set(weekly) - set(WEEKDAYS))
        if unknown:
            raise CalendarError(f"unknown weekday(s) {unknown}; use {list(WEEKDAYS)}")
        days: dict[int, tuple[tuple[int, int], ...]] = {}
        for day, ranges in weekly.items():
            spans = []
            for span in ranges:
                if len(span) != 2:
                    raise CalendarError(f"{day}: each range is [open, close], got {list(span)}")
                start, end = _minutes(span[0]), _minutes(span[1])
                if end <= start:
                    raise CalendarError(f"{day}: {span[0]}-{span[1]} closes before it opens")
                spans.append((start, end))
            spans.sort()
            for (_, end), (start, _) in itertools.pairwise(spans):
                if start < end:
                    raise CalendarError(f"{day}: opening hours overlap")
            days[WEEKDAYS.index(day)] = tuple(spans)
        return cls(name, time_zone, days, frozenset(holidays))

    def as_api(self) -> dict[str, list[list[str]]]:
        """The weekly hours in their API form."""

        def hhmm(m: int) -> str:
            return f"{m // 60:02d}:{m % 60:02d}"

        return {
            WEEKDAYS[d]: [[hhmm(s), hhmm(e)] for s, e in spans]
            for d, spans in sorted(self.weekly.items())
        }

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of [start, end) that fall in opening hours (0 when end <= start)."""
        if end <= start:
            return 0.0
        end = min(end, start + MAX_SPAN)
        zone = ZoneInfo(self.time_zone)
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        total = 0.0
        while day <= last:
            if day not in self.holidays:
                midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
                for open_m, close_m in self.weekly.get(day.weekday(), ()):
                    # Wall-clock times, so a DST change moves the hours with the local clock.
                    opens = _local(midnight, open_m, zone)
                    closes = _local(midnight, close_m, zone)
                    overlap = (min(closes, end) - max(opens, start)).total_seconds()
                    if overlap > 0:
                        total += overlap
            day += timedelta(days=1)
        return total


def _local(midnight: datetime, minutes: int, zone: ZoneInfo) -> datetime:
    """The instant (in UTC) of a local wall-clock time: arithmetic between datetimes of one
    ZoneInfo is wall-clock arithmetic in Python, which would miscount across a DST change."""
    if minutes == 24 * 60:
        following = midnight.date() + timedelta(days=1)
        local = datetime(following.year, following.month, following.day, tzinfo=zone)
    else:
        local = midnight.replace(hour=minutes // 60, minute=minutes % 60)
    return local.astimezone(UTC)
