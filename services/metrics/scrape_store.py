"""The scrape's counters and histogram buckets: read as totals plus the deltas not summed into
them yet (migration 0018's triggers keep both as the facts are written), and compacted now and
then. Nothing here commits."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.exposition import ScrapeCount


class ScrapeStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def counts(self) -> list[ScrapeCount]:
        """The scrape's counters and histogram buckets per (kind, channel, priority, bucket):
        the totals and the deltas not summed into them yet (migration 0018's triggers keep
        both as the facts are written), a few hundred rows at any history size."""
        rows = await self.session.execute(
            text("""SELECT kind, channel, priority, bucket, sum(n)::bigint AS n,
                      sum(total)::float8 AS total
                    FROM (SELECT kind, channel, priority, bucket, n, total
                          FROM metrics.scrape_totals
                          UNION ALL
                          SELECT kind, channel, priority, bucket, n, total
                          FROM metrics.scrape_deltas) c
                    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""")
        )
        return [ScrapeCount(r.kind, r.channel, r.priority, r.bucket, r.n, r.total) for r in rows]

    async def compact(self) -> None:
        """Sum the scrape's deltas into its totals (one process at a time: the others skip)."""
        if not await self.session.scalar(
            text("SELECT pg_try_advisory_xact_lock(hashtext('metrics.scrape_totals'))")
        ):
            return
        await self.session.execute(
            text("""WITH moved AS (DELETE FROM metrics.scrape_deltas RETURNING *)
                    INSERT INTO metrics.scrape_totals AS t
                    SELECT kind, channel, priority, bucket, sum(n), sum(total) FROM moved
                    GROUP BY 1, 2, 3, 4
                    ON CONFLICT (kind, channel, priority, bucket) DO UPDATE
                    SET n = t.n + excluded.n, total = t.total + excluded.total""")
        )
