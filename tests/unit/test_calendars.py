from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.metrics.calendars import BusinessCalendar, CalendarError

SGT = ZoneInfo("Asia/Singapore")
WEEKDAYS_9_TO_6 = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def apac(holidays=(date(2026, 12, 25),)):
    return BusinessCalendar.parse("apac", "Asia/Singapore", WEEKDAYS_9_TO_6, holidays)


def test_business_time_skips_the_night_the_weekend_and_a_holiday():
    # Thursday 17:00 before Christmas (a Friday holiday) to Monday 10:00, Singapore time:
    # one hour on Thursday, none on Friday, Saturday or Sunday, one hour on Monday.
    asked = datetime(2026, 12, 24, 17, 0, tzinfo=SGT)
    answered = datetime(2026, 12, 28, 10, 0, tzinfo=SGT)
    assert (answered - asked).total_seconds() == 89 * 3600
    assert apac().business_seconds(asked, answered) == 2 * 3600
    assert apac(holidays=()).business_seconds(asked, answered) == 11 * 3600


def test_business_time_within_opening_hours_equals_calendar_time_in_any_zone_of_the_input():
    start = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)  # 10:00 in Singapore
    assert apac().business_seconds(start, start + timedelta(minutes=90)) == 5400


def test_a_day_with_a_dst_change_counts_its_real_length():
    berlin = BusinessCalendar.parse(
        "eu", "Europe/Berlin", {d: [["00:00", "24:00"]] for d in ("sat", "sun")}
    )
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 12, 0, tzinfo=zone)
    end = datetime(2026, 3, 29, 12, 0, tzinfo=zone)  # clocks went forward an hour that night
    assert berlin.business_seconds(start, end) == 23 * 3600


def test_split_shifts_and_an_end_before_the_start():
    cal = BusinessCalendar.parse("split", "UTC", {"mon": [["13:00", "17:00"], ["08:00", "12:00"]]})
    monday = datetime(2026, 11, 2, tzinfo=UTC)
    assert cal.business_seconds(monday, monday + timedelta(days=1)) == 8 * 3600
    assert cal.business_seconds(monday + timedelta(hours=11), monday + timedelta(hours=14)) == (
        2 * 3600
    )
    assert cal.business_seconds(monday + timedelta(hours=9), monday) == 0
    assert cal.as_api() == {"mon": [["08:00", "12:00"], ["13:00", "17:00"]]}


@pytest.mark.parametrize(
    ("zone", "weekly", "message"),
    [
        ("Mars/Olympus", {}, "unknown time zone"),
        ("UTC", {"funday": [["09:00", "10:00"]]}, "unknown weekday"),
        ("UTC", {"mon": [["18:00", "09:00"]]}, "closes before it opens"),
        ("UTC", {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}, "overlap"),
        ("UTC", {"mon": [["9am", "5pm"]]}, "not a time of day"),
        ("UTC", {"mon": [["09:00", "25:00"]]}, "between 00:00 and 24:00"),
    ],
)
def test_a_bad_calendar_says_what_is_wrong(zone, weekly, message):
    with pytest.raises(CalendarError, match=message):
        BusinessCalendar.parse("bad", zone, weekly)


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@given(instants, instants, instants)
def test_business_time_is_additive_and_never_exceeds_calendar_time(a, b, c):
    a, b, c = sorted((a, b, c))
    cal = apac()
    whole = cal.business_seconds(a, c)
    assert whole == pytest.approx(cal.business_seconds(a, b) + cal.business_seconds(b, c))
    assert 0 <= whole <= (c - a).total_seconds()
