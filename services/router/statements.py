"""What every router store shares: the connection its statements run on, each SQL text parsed
once, and the fragments several stores write (the agent view, waking an agent)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.router.routing.classify import UNKNOWN_LANGUAGE
from services.router.routing.select import ELIGIBILITY, RANK_ORDER
from shared import rawdb

AGENT_CHANNEL = "switchboard_agent"  # NOTIFY channel: payload is the agent id
# Waking an agent: bump its inbox cursor (the long-poll compares it) and notify every replica
# with the agent's id; used as a CTE named ``woken``, so it can be made conditional.
WAKE_AGENT = "UPDATE router.agents SET inbox_version = inbox_version + 1 WHERE id = :agent"
NOTIFY_WOKEN = f"pg_notify('{AGENT_CHANNEL}', id)"
AGENT_VIEW = """
    SELECT a.id, a.name, a.status, a.skills, a.languages, a.last_assigned_at, a.team, a.max_load,
           coalesce(jsonb_object_agg(s.channel, s.capacity)
                    FILTER (WHERE s.channel IS NOT NULL), '{}') AS capacity,
           coalesce(jsonb_object_agg(s.channel, s.load)
                    FILTER (WHERE s.channel IS NOT NULL), '{}') AS load
    FROM router.agents a LEFT JOIN router.agent_slots s ON s.agent_id = a.id
"""

# What each term of ``routing.select.RANK_ORDER`` reads in a candidates query, of an agent
# ``c`` and its slot ``f`` on the need's channel; ``CANDIDATE_ORDER`` is that order as SQL.
# No term but the last assignment is ever null. ``COLLATE "C"`` compares ids by code point,
# as Python compares str.
_RANK_COLUMNS = {
    "occupancy": "CAST(f.load AS float8) / f.capacity",
    "last_assigned_at": "c.last_assigned_at",
    "id": 'c.id COLLATE "C"',
}
CANDIDATE_ORDER = ", ".join(
    _RANK_COLUMNS[term.value] + (" ASC NULLS FIRST" if term.nulls_first else "")
    for term in RANK_ORDER
)


@dataclass(frozen=True)
class NeedColumns:
    """A need's fields as SQL expressions: bound parameters (one need), or the columns of a
    set of needs. ``excluded`` (text[]) and the overflow's fields are left out (None) where
    the read has none."""

    skill: str
    level: str
    language: str
    team: str
    excluded: str | None = None
    fallback_languages: str | None = None  # text[]
    overflow_team: str | None = None


def _skill_and_team(n: NeedColumns) -> str:
    skilled = f"""coalesce((c.skills ->> {n.skill})::int, 0) >= {n.level}
                  AND ({n.team} IS NULL OR c.team = {n.team})"""
    return skilled if n.overflow_team is None else f"({skilled}) OR c.team = {n.overflow_team}"


def _language(n: NeedColumns) -> str:
    spoken = f"{n.language} = '{UNKNOWN_LANGUAGE}' OR {n.language} = ANY(c.languages)"
    if n.fallback_languages is None:
        return spoken
    return f"{spoken} OR c.languages && {n.fallback_languages}"


# The terms that do not depend on the need, of an agent ``c`` and its slot ``f``: online, and
# room on the slot's channel and under ``max_load`` (the agent's load is the sum of its slots').
ONLINE = "c.status = 'online'"
ROOM = """f.load < f.capacity AND (c.max_load IS NULL OR (
              SELECT coalesce(sum(t.load), 0) FROM router.agent_slots t
              WHERE t.agent_id = c.id) < c.max_load)"""

# What each term of ``routing.select.ELIGIBILITY`` requires of an agent ``c`` and its slot
# ``f`` on the need's channel; ``eligible_sql`` is their conjunction.
_ELIGIBILITY_SQL: dict[str, Callable[[NeedColumns], str]] = {
    "online": lambda n: ONLINE,
    "skill_and_team": _skill_and_team,
    "language": _language,
    "not_excluded": lambda n: "true" if n.excluded is None else f"NOT (c.id = ANY({n.excluded}))",
    "room": lambda n: ROOM,
}
assert tuple(_ELIGIBILITY_SQL) == ELIGIBILITY, "a term of eligibility has no SQL"


def eligible_sql(need: NeedColumns) -> str:
    """``routing.select.is_eligible`` as a condition on an agent ``c`` and its slot ``f`` on
    the need's channel."""
    return " AND ".join(f"({_ELIGIBILITY_SQL[term](need)})" for term in ELIGIBILITY)


@lru_cache(maxsize=512)
def _statement(sql: str) -> TextClause:
    """Parse each SQL text once: building ``text()`` on every call showed in profiles."""
    return text(sql)


class Statements:
    """Statements on ``db``: a connection of shared/rawdb.py (the services), or a SQLAlchemy
    session or connection (tools and tests)."""

    def __init__(self, db: rawdb.Connection | AsyncSession | AsyncConnection) -> None:
        self.db = db

    async def _exec(self, sql: str, **params: Any) -> Any:
        return await self.db.execute(_statement(sql), params)
