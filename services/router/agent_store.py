"""The agents' statements: their rows and slots, status and presence, the candidates for a
need, claiming and releasing slots, waking a long-poll. ``RouterStore`` has them all."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from services.router.routing.select import AgentView, Need
from services.router.rows import agent_view_of
from services.router.statements import (
    AGENT_VIEW,
    CANDIDATE_ORDER,
    NOTIFY_WOKEN,
    WAKE_AGENT,
    NeedColumns,
    Statements,
    eligible_sql,
)
from shared.events import AgentStatus, Channel


def _candidates(need: NeedColumns) -> str:
    """The best ``:limit`` eligible agents for a need bound as ``need``, as agent views."""
    return f"""{AGENT_VIEW} WHERE a.id IN (
                    SELECT c.id FROM router.agents c
                    JOIN router.agent_slots f ON f.agent_id = c.id AND f.channel = :channel
                    WHERE {eligible_sql(need)}
                    ORDER BY {CANDIDATE_ORDER}
                    LIMIT :limit)
                  GROUP BY a.id"""


# A need as ``candidates`` binds it; after overflow, with its fallback languages and team.
_NEED = NeedColumns(":skill", ":level", ":language", "CAST(:team AS text)", ":excluded")
_CANDIDATES = _candidates(_NEED)
_OVERFLOWED_CANDIDATES = _candidates(
    dataclasses.replace(
        _NEED,
        fallback_languages="CAST(:fallbacks AS text[])",
        overflow_team="CAST(:overflow_team AS text)",
    )
)


# Give back one slot, without the agent's row: only as the transaction's last lock. Whoever
# takes load locks the agent's row, then the slot's; freeing load only makes room, so a last
# release need not queue behind an intake batch holding the agent (migration 0020). Not last,
# a transaction holding the slot could wait for an agent's row that a batch holds while the
# batch waits for the slot.
RELEASE_SLOT_LAST = """UPDATE router.agent_slots SET load = load - 1
                       WHERE agent_id = :agent AND channel = :channel AND load > 0"""


class AgentStatements(Statements):
    async def upsert_agent(
        self,
        *,
        agent_id: str,
        name: str,
        skills: dict[str, int],
        languages: list[str],
        capacity: dict[str, int],
        team: str | None,
        max_load: int | None,
    ) -> None:
        await self._exec(
            """INSERT INTO router.agents (id, name, skills, languages, team, max_load)
               VALUES (:id, :name, CAST(:skills AS jsonb), :languages, :team, :max_load)
               ON CONFLICT (id) DO UPDATE SET name = excluded.name, skills = excluded.skills,
                   languages = excluded.languages, team = excluded.team,
                   max_load = excluded.max_load, updated_at = now()""",
            id=agent_id,
            name=name,
            skills=json.dumps(skills),
            languages=languages,
            team=team,
            max_load=max_load,
        )
        # Channels left out keep their load (open conversations stay) but get no new ones.
        await self._exec(
            """INSERT INTO router.agent_slots (agent_id, channel, capacity)
               SELECT :id, c.key, c.value::int FROM jsonb_each_text(CAST(:cap AS jsonb)) c
               ON CONFLICT (agent_id, channel) DO UPDATE SET capacity = excluded.capacity""",
            id=agent_id,
            cap=json.dumps(capacity),
        )
        await self._exec(
            """UPDATE router.agent_slots SET capacity = 0
               WHERE agent_id = :id AND NOT (channel = ANY(:channels))""",
            id=agent_id,
            channels=list(capacity),
        )

    async def set_status(
        self, agent_id: str, status: AgentStatus, *, unheard_for_s: float | None = None
    ) -> bool:
        """Set the status (locking the agent row, so no slot is claimed meanwhile); going
        online counts as hearing from the agent's frontend. With ``unheard_for_s``, only if
        the agent is online and its frontend was not heard from for that long. Whether it
        was set."""
        result = await self._exec(
            """UPDATE router.agents SET status = :status, updated_at = now(),
                      missed_offers = CASE WHEN :status = 'online' THEN 0 ELSE missed_offers END,
                      last_seen_at = CASE WHEN :status = 'online' THEN now()
                                          ELSE last_seen_at END
               WHERE id = :id
                 AND (CAST(:unheard AS float8) IS NULL
                      OR (status = 'online'
                          AND last_seen_at < now() - make_interval(secs => :unheard)))""",
            id=agent_id,
            status=status.value,
            unheard=unheard_for_s,
        )
        return bool(result.rowcount == 1)

    async def unheard_agents(self, unheard_for_s: float, *, limit: int) -> list[str]:
        """Agents online whose frontend was not heard from for ``unheard_for_s`` (unlocked:
        ``set_status`` with ``unheard_for_s`` re-checks), longest unheard first."""
        # A scan of the desk's staff, not of its history (as ``anyone_with_room``).
        rows = await self._exec(
            """SELECT id FROM router.agents
               WHERE status = 'online' AND last_seen_at < now() - make_interval(secs => :unheard)
               ORDER BY last_seen_at LIMIT :limit""",
            unheard=unheard_for_s,
            limit=limit,
        )
        return [r.id for r in rows]

    async def record_heard(self, heard_ago_s: dict[str, float]) -> list[str]:
        """Write when each agent's frontend was last heard from (seconds ago, by agent), in
        one statement, never moving a time back; the agents whose row another transaction
        held are skipped (no wait, so no deadlock with writers that lock agents in their own
        order) and answered, to be written next time."""
        rows = await self._exec(
            """WITH heard AS (
                   SELECT id, statement_timestamp() - make_interval(secs => ago) AS at
                   FROM unnest(CAST(:ids AS text[]), CAST(:agos AS float8[])) AS u(id, ago)),
               locked AS (
                   SELECT id FROM router.agents WHERE id = ANY(:ids)
                   ORDER BY id FOR NO KEY UPDATE SKIP LOCKED),
               written AS (
                   UPDATE router.agents a SET last_seen_at = h.at FROM heard h
                   WHERE a.id = h.id AND a.id IN (SELECT id FROM locked)
                     AND a.last_seen_at < h.at
                   RETURNING a.id)
               SELECT h.id FROM heard h
               WHERE h.id NOT IN (SELECT id FROM locked)
                 AND EXISTS (SELECT 1 FROM router.agents a WHERE a.id = h.id)""",
            ids=list(heard_ago_s),
            agos=list(heard_ago_s.values()),
        )
        return [r.id for r in rows]

    async def count_missed_offer(self, agent_id: str) -> int:
        """One more offer missed in a row; the new count."""
        row = await self._exec(
            """UPDATE router.agents SET missed_offers = missed_offers + 1 WHERE id = :id
               RETURNING missed_offers""",
            id=agent_id,
        )
        return int(row.scalar_one())

    async def reset_missed_offers(self, agent_id: str) -> None:
        await self._exec("UPDATE router.agents SET missed_offers = 0 WHERE id = :id", id=agent_id)

    async def agents(self, *, after: str = "", limit: int | None = None) -> list[AgentView]:
        """Agents in id order, those after ``after`` (up to ``limit``)."""
        rows = await self._exec(
            AGENT_VIEW
            + """ WHERE a.id IN (SELECT id FROM router.agents WHERE id > :after
                                 ORDER BY id LIMIT :limit)
                  GROUP BY a.id ORDER BY a.id""",
            after=after,
            limit=limit,
        )
        return [agent_view_of(r) for r in rows]

    async def agent(self, agent_id: str) -> AgentView | None:
        row = await self._exec(AGENT_VIEW + " WHERE a.id = :id GROUP BY a.id", id=agent_id)
        found = row.first()
        return agent_view_of(found) if found else None

    async def agent_details(self, agent_id: str) -> dict[str, Any] | None:
        row = await self._exec(
            "SELECT id, name, status, inbox_version FROM router.agents WHERE id = :id",
            id=agent_id,
        )
        found = row.first()
        return dict(found._mapping) if found else None

    async def candidates(
        self, need: Need, *, limit: int, skip: Collection[str] = ()
    ) -> list[AgentView]:
        """The ``limit`` best online agents with the skill, the language, the team and room on
        the channel, leaving out ``skip`` (unlocked: a slot is claimed with ``claim_slot``,
        which re-checks).

        "Best" is ``routing.select.RANK_ORDER``, as SQL (``CANDIDATE_ORDER``), so that only a
        few agents' rows are read and decoded, however many are online; the caller ranks them
        again with the pure function."""
        overflowed = bool(need.fallback_languages) or need.overflow_team is not None
        rows = await self._exec(
            _OVERFLOWED_CANDIDATES if overflowed else _CANDIDATES,
            skill=need.skill.value,
            level=need.min_level,
            language=need.language,
            channel=need.channel.value,
            team=need.team,
            excluded=[*need.excluded, *skip],
            limit=limit,
            **(
                {
                    "fallbacks": sorted(need.fallback_languages),
                    "overflow_team": need.overflow_team,
                }
                if overflowed
                else {}
            ),
        )
        return [agent_view_of(r) for r in rows]

    async def claim_slot(self, agent_id: str, channel: Channel, now: datetime) -> bool:
        """Take one slot of an online agent on ``channel``, within its overall cap, atomically;
        False if full or not online.

        One round trip to ``router.claim_slot()`` (migration 0008): the agent row is updated
        first, then the channel's slot row (every writer of slots holds the agent row first, but a
        release that is its transaction's last lock, ``release_slot``; so this
        order never deadlocks), and each UPDATE re-checks its condition after waiting for a
        concurrent one. A failed claim is undone inside the function as if by a savepoint,
        which releases the agent's row lock at once: a transaction only keeps locks on agents
        it actually assigned to, so trying candidates in rank order cannot deadlock."""
        claimed = await self._exec(
            "SELECT router.claim_slot(:agent, :channel, :now)",
            agent=agent_id,
            channel=channel.value,
            now=now,
        )
        return bool(claimed.scalar_one())

    async def lock_agents(self, agent_ids: list[str]) -> None:
        """Lock several agents' rows in id order (the one order every multi-agent writer uses)."""
        await self._exec(
            "SELECT id FROM router.agents WHERE id = ANY(:ids) ORDER BY id FOR UPDATE",
            ids=agent_ids,
        )

    async def release_slot(self, agent_id: str, channel: Channel) -> None:
        """Give back one slot, holding the agent's row first, as whoever takes load does (a
        release that is its transaction's last lock may take the slot alone:
        ``RouterStore.resolve``)."""
        await self._exec(
            """WITH agent AS (SELECT id FROM router.agents WHERE id = :agent FOR UPDATE)
               UPDATE router.agent_slots SET load = load - 1
               WHERE agent_id = (SELECT id FROM agent) AND channel = :channel AND load > 0""",
            agent=agent_id,
            channel=channel.value,
        )

    async def wake_agent(self, agent_id: str) -> None:
        """Something new for the agent: bump its inbox cursor and notify every replica (the
        notification is delivered when the transaction commits, and only then)."""
        await self._exec(
            f"WITH woken AS ({WAKE_AGENT} RETURNING id) SELECT {NOTIFY_WOKEN} FROM woken",
            agent=agent_id,
        )
