"""Business-hours calendars as stored: which calendar covers a conversation, and the
statements that keep them. Nothing here commits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.calendars import BusinessCalendar
from services.metrics.rows import json_param


def choose_calendar(
    rows: list[dict[str, Any]], *, team: str | None, channel: str
) -> BusinessCalendar | None:
    """The calendar of a team, else of a channel (by name when several), else None: the
    desk never closes."""
    for_team = sorted(
        (r for r in rows if team is not None and team in r["teams"]), key=lambda r: r["name"]
    )
    for_channel = sorted((r for r in rows if channel in r["channels"]), key=lambda r: r["name"])
    candidates = for_team or for_channel
    if not candidates:
        return None
    chosen = candidates[0]
    holidays = [date.fromisoformat(str(d)) for d in chosen["holidays"]]
    return BusinessCalendar.parse(
        chosen["name"], chosen["time_zone"], json_param(chosen["weekly"]), holidays
    )


def _calendar_row(row: Any) -> dict[str, Any]:
    return dict(row._mapping) | {"weekly": json_param(row.weekly)}


class CalendarStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def put_calendar(
        self, calendar: BusinessCalendar, *, channels: Sequence[str], teams: Sequence[str]
    ) -> None:
        await self.session.execute(
            text("""INSERT INTO metrics.calendars VALUES (:name, :tz, :weekly, :holidays,
                                                          :channels, :teams)
                    ON CONFLICT (name) DO UPDATE SET time_zone = excluded.time_zone,
                      weekly = excluded.weekly, holidays = excluded.holidays,
                      channels = excluded.channels, teams = excluded.teams"""),
            {
                "name": calendar.name,
                "tz": calendar.time_zone,
                "weekly": json.dumps(calendar.as_api()),
                "holidays": sorted(calendar.holidays),
                "channels": list(channels),
                "teams": list(teams),
            },
        )

    async def calendars(self) -> list[dict[str, Any]]:
        rows = await self.session.execute(text("SELECT * FROM metrics.calendars ORDER BY name"))
        return [_calendar_row(r) for r in rows]

    async def calendar(self, name: str) -> dict[str, Any] | None:
        row = (
            await self.session.execute(
                text("SELECT * FROM metrics.calendars WHERE name = :name"), {"name": name}
            )
        ).first()
        return _calendar_row(row) if row else None

    async def delete_calendar(self, name: str) -> dict[str, Any] | None:
        row = (
            await self.session.execute(
                text("DELETE FROM metrics.calendars WHERE name = :name RETURNING *"),
                {"name": name},
            )
        ).first()
        return _calendar_row(row) if row else None

    async def conversations_in(
        self, *, channels: Sequence[str], teams: Sequence[str]
    ) -> list[uuid.UUID]:
        """Conversations of these channels or teams (whose business times a calendar sets)."""
        rows = await self.session.execute(
            text("""SELECT conversation_id FROM metrics.conversations
                    WHERE channel = ANY(:channels) OR team = ANY(:teams)"""),
            {"channels": list(channels), "teams": list(teams)},
        )
        return [r[0] for r in rows]
