"""Business-hours calendars: ops define them per team or channel; business-time figures of the
conversations they cover are derived again when one changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.calendar_store import CalendarStore
from services.metrics.calendars import BusinessCalendar, CalendarError
from services.metrics.store import MetricsStore
from shared.auth import OPS, PrincipalDep
from shared.events import Channel
from shared.problems import BadRequest, NotFound

router = APIRouter(tags=["calendars"])

CalendarName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,50}$")]
RECOMPUTE_BATCH = 500


class CalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time_zone: str = Field(max_length=64, examples=["Asia/Singapore"])
    weekly: dict[str, list[list[str]]] = Field(
        description='opening hours per weekday, e.g. {"mon": [["09:00", "18:00"]]}',
        examples=[{"mon": [["09:00", "18:00"]], "tue": [["09:00", "18:00"]]}],
    )
    holidays: list[date] = Field(default=[], max_length=1000)
    channels: list[Channel] = Field(default=[], description="channels this calendar covers")
    teams: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default=[], max_length=200, description="teams this calendar covers (before channels)"
    )


class CalendarOut(CalendarIn):
    name: str
    recomputed_conversations: int | None = None


def _out(row: dict[str, Any], recomputed: int | None = None) -> CalendarOut:
    return CalendarOut(
        name=row["name"],
        time_zone=row["time_zone"],
        weekly=row["weekly"],
        holidays=row["holidays"],
        channels=row["channels"],
        teams=row["teams"],
        recomputed_conversations=recomputed,
    )


async def recompute(
    sessions: async_sessionmaker[AsyncSession], *, channels: Sequence[str], teams: Sequence[str]
) -> int:
    """Derive again the facts of every conversation of these channels or teams, a batch per
    transaction; the number of conversations."""
    async with sessions() as session:
        ids = await CalendarStore(session).conversations_in(channels=channels, teams=teams)
    for start in range(0, len(ids), RECOMPUTE_BATCH):
        async with sessions() as session, session.begin():
            store = MetricsStore(session)
            for conversation_id in ids[start : start + RECOMPUTE_BATCH]:
                await store.refresh(conversation_id)
    return len(ids)


@router.put("/v1/calendars/{name}", response_model=CalendarOut)
async def put_calendar(
    name: CalendarName, body: CalendarIn, principal: PrincipalDep, request: Request
) -> CalendarOut:
    """Create or replace a calendar (time zone, weekly hours, holidays) and the teams and
    channels it covers; business times of the conversations it covers, before and after the
    change, are derived again."""
    principal.require(OPS)
    try:
        calendar = BusinessCalendar.parse(name, body.time_zone, body.weekly, body.holidays)
    except CalendarError as exc:
        raise BadRequest(f"calendar {name!r}: {exc}") from exc
    channels = [c.value for c in body.channels]
    sessions = request.app.state.sessions
    async with sessions() as session, session.begin():
        store = CalendarStore(session)
        before = await store.calendar(name)
        await store.put_calendar(calendar, channels=channels, teams=body.teams)
    covered_channels = set(channels) | set(before["channels"] if before else [])
    covered_teams = set(body.teams) | set(before["teams"] if before else [])
    count = await recompute(
        sessions, channels=sorted(covered_channels), teams=sorted(covered_teams)
    )
    return CalendarOut(name=name, recomputed_conversations=count, **body.model_dump())


@router.get("/v1/calendars", response_model=list[CalendarOut])
async def list_calendars(principal: PrincipalDep, request: Request) -> list[CalendarOut]:
    principal.require(OPS)
    async with request.app.state.sessions() as session:
        return [_out(row) for row in await CalendarStore(session).calendars()]


@router.get("/v1/calendars/{name}", response_model=CalendarOut)
async def get_calendar(
    name: CalendarName, principal: PrincipalDep, request: Request
) -> CalendarOut:
    principal.require(OPS)
    async with request.app.state.sessions() as session:
        row = await CalendarStore(session).calendar(name)
    if row is None:
        raise NotFound(f"calendar {name!r} does not exist")
    return _out(row)


@router.delete("/v1/calendars/{name}", status_code=204)
async def delete_calendar(
    name: CalendarName, principal: PrincipalDep, request: Request
) -> Response:
    """Remove a calendar; the conversations it covered count around the clock again."""
    principal.require(OPS)
    sessions = request.app.state.sessions
    async with sessions() as session, session.begin():
        row = await CalendarStore(session).delete_calendar(name)
    if row is None:
        raise NotFound(f"calendar {name!r} does not exist")
    await recompute(sessions, channels=row["channels"], teams=row["teams"])
    return Response(status_code=204)
