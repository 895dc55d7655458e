"""The live views: the router's queue and its agents as the events folded so far show them
(what ``/v1/live/*`` and the scrape's gauges report). Nothing here writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.rows import json_param


class LiveStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def queues(self, now: datetime) -> list[dict[str, Any]]:
        """Conversations in the router's queue now per channel, priority, skill and language
        (their classification), with the oldest one's age in the queue and how many of them
        are stuck (still there after their last overflow stage)."""
        rows = await self.session.execute(
            text(
                """SELECT channel, coalesce(priority, 'unclassified') AS priority, skill,
                      language, count(*) AS depth,
                      date_part('epoch', :now - min(queued_since)) AS oldest_wait_s,
                      count(stuck_since) AS stuck
               FROM metrics.conversations
               WHERE queued_since IS NOT NULL
               GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""
            ),
            {"now": now},
        )
        return [dict(r._mapping) for r in rows]

    async def agents(self, *, after: str = "", limit: int | None = None) -> list[dict[str, Any]]:
        """Known agents after ``after`` in id order, at most ``limit`` (None: all): status,
        team, capacity per channel and load (the conversations whose slot it holds now,
        offered or assigned, per channel)."""
        rows = await self.session.execute(
            text("""WITH page AS (SELECT * FROM metrics.agents WHERE agent_id > :after
                                  ORDER BY agent_id LIMIT :limit)
                    SELECT a.agent_id, a.status, a.team, a.capacity, a.status_at,
                           coalesce(l.load, '{}'::jsonb) AS load
                    FROM page a
                    LEFT JOIN (SELECT held_by AS agent_id, jsonb_object_agg(channel, n) AS load
                               FROM (SELECT held_by, channel, count(*) AS n
                                     FROM metrics.conversations
                                     WHERE held_by IN (SELECT agent_id FROM page)
                                     GROUP BY 1, 2) per_channel
                               GROUP BY held_by) l USING (agent_id)
                    ORDER BY a.agent_id"""),
            {"after": after, "limit": limit},
        )
        return [
            dict(r._mapping) | {"capacity": json_param(r.capacity), "load": json_param(r.load)}
            for r in rows
        ]
