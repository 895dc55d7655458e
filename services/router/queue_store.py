"""The queue's statements: what an agent freed can pull, the heads the queue sweep tries,
what the sweeps find overdue (offers, escalation, overflow), the queue order's lock and the
queues' figures. ``RouterStore`` has them all."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from services.router.model import Conversation
from services.router.routing.classify import UNKNOWN_LANGUAGE
from services.router.routing.select import AgentView, Reach
from services.router.rows import CONVERSATION_COLUMNS, conversation_of
from services.router.statements import ONLINE, ROOM, Statements
from shared.events import Channel, Priority

_QUEUE_ORDER_LOCK = 0x5B0A4E  # advisory lock id of the queue order (the sweep, going online)


# Whether any conversation waits: one probe of the queue's partial index.
ANYTHING_QUEUED = "EXISTS (SELECT 1 FROM router.conversations WHERE state = 'queued')"


class QueueStatements(Statements):
    async def queued_for(
        self, agent: AgentView, reach: Reach, *, per_priority: int
    ) -> list[Conversation]:
        """The heads of the queue (up to ``per_priority`` of each priority, oldest first) on the
        agent's channels with room, within its ``reach`` (``routing.select.reach``: skills
        and team, escalation's widening applied), in its languages, locked until the
        transaction ends; rows another transaction holds are skipped."""
        channels = [c for c in agent.capacity if agent.room(Channel(c)) > 0]
        if not channels:
            return []
        found: list[Conversation] = []
        for rank in range(len(Priority)):
            rows = await self._exec(
                f"""SELECT {CONVERSATION_COLUMNS} FROM router.conversations
                    WHERE state = 'queued' AND priority_rank = :rank
                      AND channel = ANY(:channels)
                      AND ((min_level <= coalesce(
                                (CASE WHEN escalated_at IS NULL THEN CAST(:levels AS jsonb)
                                      ELSE CAST(:escalated_levels AS jsonb) END ->> skill)::int,
                                0)
                            AND (team IS NULL OR team = :team
                                 OR (escalated_at IS NOT NULL AND :escalated_any_team)))
                           OR overflow_team = :team)
                      AND (language = ANY(:languages) OR language = :unknown
                           OR fallback_languages && CAST(:languages AS text[]))
                      AND NOT (:agent = ANY(excluded_agents))
                    ORDER BY queued_at, id
                    LIMIT :limit FOR UPDATE SKIP LOCKED""",
                rank=rank,
                channels=channels,
                levels=json.dumps(dict(reach.levels)),
                escalated_levels=json.dumps(dict(reach.escalated_levels)),
                languages=list(agent.languages),
                unknown=UNKNOWN_LANGUAGE,
                team=agent.team,
                escalated_any_team=reach.escalated_any_team,
                agent=agent.id,
                limit=per_priority,
            )
            found += [conversation_of(r) for r in rows]
        return found

    async def lock_queue_order(self) -> None:
        """Wait for, and hold until this transaction ends, the right to hand out queued work
        in queue order: the sweep and an agent coming online take it, so one never sees the
        other half done (the sweep finding the agent still offline for the urgent head and
        already online for the low one, while the agent's own pull skipped both as locked)."""
        await self._exec(f"SELECT pg_advisory_xact_lock({_QUEUE_ORDER_LOCK})")

    async def anyone_with_room(self) -> bool:
        """Whether any online agent has a free slot on some channel (an index-free read of the
        agents and their slots: the desk's staff, not its history)."""
        row = await self._exec(
            f"""SELECT EXISTS (
                   SELECT 1 FROM router.agents c JOIN router.agent_slots f ON f.agent_id = c.id
                   WHERE {ONLINE} AND {ROOM})"""
        )
        return bool(row.scalar())

    async def anything_queued(self) -> bool:
        """Whether any conversation waits (one index probe; skips the per-priority reads)."""
        row = await self._exec(f"SELECT {ANYTHING_QUEUED}")
        return bool(row.scalar())

    async def queue_heads(self, *, per_priority: int) -> list[Conversation]:
        """The oldest ``per_priority`` queued conversations of each priority, locked (SKIP
        LOCKED) by one statement: locking priority by priority let an agent coming online
        meanwhile pull a low one while the sweep held the urgent one."""
        heads = " UNION ALL ".join(
            f"""(SELECT id FROM router.conversations
                 WHERE state = 'queued' AND priority_rank = {rank}
                 ORDER BY queued_at, id LIMIT :limit)"""
            for rank in range(len(Priority))
        )
        rows = await self._exec(
            f"""SELECT {CONVERSATION_COLUMNS} FROM router.conversations
                WHERE id IN ({heads})
                ORDER BY priority_rank, queued_at, id FOR UPDATE SKIP LOCKED""",
            limit=per_priority,
        )
        return [conversation_of(r) for r in rows]

    async def expired_offers(
        self, timeouts: dict[str, float], now: datetime, *, limit: int
    ) -> list[Conversation]:
        """Offers not accepted within their channel's timeout, locked (SKIP LOCKED)."""
        return await self._overdue(
            timeouts,
            key="c.channel",
            where="c.state = 'assigned' AND c.accepted_at IS NULL",
            since="offered_at",
            now=now,
            limit=limit,
        )

    async def due_for_escalation(
        self, due_s: dict[str, float], now: datetime, *, limit: int
    ) -> list[Conversation]:
        """Queued, not yet escalated conversations that waited ``due_s[priority]`` seconds."""
        return await self._overdue(
            due_s,
            key="c.priority",
            where="c.state = 'queued' AND c.escalated_at IS NULL",
            since="queued_at",
            now=now,
            limit=limit,
        )

    async def due_for_overflow(
        self, due_s: dict[str, float], now: datetime, *, limit: int
    ) -> list[Conversation]:
        """Queued conversations whose next overflow stage is due: ``due_s`` by
        ``"<priority>:<stages applied>"`` (``routing.overflow.due_after``), locked (SKIP
        LOCKED), as escalation reads them."""
        return await self._overdue(
            due_s,
            key="c.priority || ':' || c.overflow_stage",
            where="c.state = 'queued'",
            since="queued_at",
            now=now,
            limit=limit,
        )

    async def _overdue(
        self,
        seconds: dict[str, float],
        *,
        key: str,
        where: str,
        since: str,
        now: datetime,
        limit: int,
    ) -> list[Conversation]:
        """Conversations matching ``where`` whose ``since`` time plus the seconds ``seconds``
        gives their ``key`` (an expression of the row) has passed ``now``, oldest first,
        locked (SKIP LOCKED: what another sweeping replica holds is left to it). The
        fragments are the callers' constants, so each caller is one cached statement."""
        if not seconds:
            return []
        rows = await self._exec(
            f"""SELECT {CONVERSATION_COLUMNS} FROM router.conversations c
                JOIN jsonb_each_text(CAST(:seconds AS jsonb)) d ON d.key = {key}
                WHERE {where}
                  AND c.{since} + make_interval(secs => d.value::float) <= :now
                ORDER BY c.{since} LIMIT :limit FOR UPDATE OF c SKIP LOCKED""",
            seconds=json.dumps(seconds),
            now=now,
            limit=limit,
        )
        return [conversation_of(r) for r in rows]

    async def mark_overflowed(self, conv: Conversation) -> None:
        """Write what overflow widened (``routing.overflow.overflow``'s conversation)."""
        await self._exec(
            """UPDATE router.conversations
               SET overflow_stage = :stage, fallback_languages = :languages,
                   overflow_team = :overflow_team, skill = :skill, min_level = :min_level,
                   rules_fired = :rules, stuck_since = :stuck_since
               WHERE id = :id AND state = 'queued'""",
            id=conv.id,
            stage=conv.overflow_stage,
            languages=list(conv.fallback_languages),
            overflow_team=conv.overflow_team,
            skill=conv.skill.value,
            min_level=conv.min_level,
            rules=list(conv.rules_fired),
            stuck_since=conv.stuck_since,
        )

    async def queue_stats(
        self, now: datetime, *, after: tuple[str, str] = ("", ""), limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Depth, oldest wait, priority mix, and how many overflowed and are stuck, of each
        (skill, language) queue, in that order, those after ``after`` (up to ``limit``)."""
        rows = await self._exec(
            """SELECT skill, language, sum(n)::int AS depth,
                      extract(epoch FROM (:now - min(oldest)))::float AS oldest_wait_s,
                      jsonb_object_agg(priority, n) AS priorities,
                      sum(overflowed)::int AS overflowed, sum(stuck)::int AS stuck
               FROM (SELECT skill, language, priority, count(*) AS n, min(queued_at) AS oldest,
                            count(*) FILTER (WHERE overflow_stage > 0) AS overflowed,
                            count(*) FILTER (WHERE stuck_since IS NOT NULL) AS stuck
                     FROM router.conversations
                     WHERE state = 'queued' AND (skill, language) > (:skill, :language)
                     GROUP BY skill, language, priority) q
               GROUP BY skill, language ORDER BY skill, language LIMIT :limit""",
            now=now,
            skill=after[0],
            language=after[1],
            limit=limit,
        )
        return [dict(r._mapping) for r in rows]
