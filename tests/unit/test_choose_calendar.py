from services.metrics.calendar_store import choose_calendar

WEEKDAYS = {"mon": [["09:00", "17:00"]]}


def calendar(name, *, channels=(), teams=()):
    return {
        "name": name,
        "time_zone": "UTC",
        "weekly": WEEKDAYS,
        "holidays": ["2026-12-25"],
        "channels": list(channels),
        "teams": list(teams),
    }


def test_a_team_calendar_wins_over_the_channel_one_and_names_break_ties():
    rows = [
        calendar("email-desk", channels=["email"]),
        calendar("b-night", teams=["night"]),
        calendar("a-night", teams=["night"]),
    ]
    assert choose_calendar(rows, team="night", channel="email").name == "a-night"
    assert choose_calendar(rows, team="day", channel="email").name == "email-desk"
    assert choose_calendar(rows, team=None, channel="chat") is None
    chosen = choose_calendar(rows, team=None, channel="email")
    assert [d.isoformat() for d in chosen.holidays] == ["2026-12-25"]
