"""The report's reads of the metrics schema: a repeatable-read snapshot (shared between
transactions), the hours of opening that changed since a transaction, and the reported columns
of an hour, decoded from PostgreSQL's binary arrays. Nothing here writes."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.columnar import CONVERSATION_COLUMNS, WAIT_COLUMNS
from services.metrics.fold_batch import BEGINNING
from services.metrics.report import DIMENSIONS

# The hour (UTC) of a moment: the report columns' chunks.
HOUR = "date_bin(INTERVAL '1 hour', {}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
# How hour_columns joins an hour's dimension values (ASCII unit separator), and marks a missing
# one (record separator): characters no channel, agent or team name holds.
SEPARATOR, NO_VALUE = 31, 30


@dataclass(frozen=True)
class HourChunk:
    """The reported columns of the rows opened in one hour (see hour_columns)."""

    hour: datetime
    columns: dict[str, Any]


def _hour_chunk(row: Any, dtypes: dict[str, Any]) -> HourChunk:
    """One row of hour_columns decoded: numbers from PostgreSQL's binary format of a
    one-dimensional array without nulls (``array_send``: a 20-byte header, then each
    element's length and big-endian value), dimensions split into their values."""
    rows = int(row.rows)
    columns: dict[str, Any] = {}
    for name, dtype in dtypes.items():
        data, dtype = getattr(row, name), np.dtype(dtype)
        dims, has_nulls, _, length, _ = struct.unpack_from(">iiIii", data)
        if dims != 1 or has_nulls or length != rows:
            raise ValueError(f"{name}: expected {rows} values without nulls, got {length}")
        element = np.dtype("u1") if dtype == np.bool_ else dtype.newbyteorder(">")
        layout = np.dtype([("length", ">i4"), ("value", element)])
        columns[name] = np.frombuffer(data, layout, count=rows, offset=20)["value"].astype(dtype)
    for dimension in DIMENSIONS:
        joined: str = getattr(row, dimension)
        values: Sequence[str | None] = joined.split(chr(SEPARATOR))
        if chr(NO_VALUE) in joined:
            values = [None if v == chr(NO_VALUE) else v for v in values]
        if len(values) != rows:
            raise ValueError(f"{dimension}: a value holds the separator {SEPARATOR}")
        columns[dimension] = values
    return HourChunk(row.hour, columns)


class ReportStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def begin_report(self) -> int:
        """Start a repeatable-read transaction; the oldest transaction its snapshot does not
        see (every change it misses was made by that one or a later one)."""
        await self.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        xmin = await self.session.scalar(
            text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        )
        return int(xmin)

    async def export_snapshot(self) -> str:
        """Name this transaction's snapshot, for another to share (see use_snapshot)."""
        return str(await self.session.scalar(text("SELECT pg_export_snapshot()")))

    async def use_snapshot(self, snapshot: str) -> None:
        """Make this new transaction see exactly what the one that exported ``snapshot`` sees."""
        await self.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        await self.session.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))

    async def opened_hours(self, since: datetime | None = None) -> list[datetime]:
        """Every hour (UTC) from the first conversation's opening (at or after ``since``) to
        the last one's."""
        rows = await self.session.execute(
            text(f"""SELECT generate_series({HOUR.format("min(opened_at)")},
                                         {HOUR.format("max(opened_at)")}, INTERVAL '1 hour')
                    FROM metrics.conversations WHERE opened_at >= :since"""),
            {"since": since or BEGINNING},
        )
        return [r[0] for r in rows if r[0] is not None]

    async def changed_hours(self, since: int) -> list[datetime]:
        """Hours of opening whose conversations (or their waits, or CSAT) changed in
        transaction ``since`` or a later one, and hours conversations left since."""
        rows = await self.session.execute(
            text(f"""SELECT {HOUR.format("opened_at")} FROM metrics.conversations
                    WHERE changed_xid >= CAST(:since AS xid8) AND opened_at IS NOT NULL
                    UNION
                    SELECT {HOUR.format("opened_at")} FROM metrics.report_moves
                    WHERE changed_xid >= CAST(:since AS xid8)"""),
            {"since": since},
        )
        return sorted(r[0] for r in rows)

    async def hour_columns(
        self, start: datetime, end: datetime
    ) -> tuple[list[HourChunk], list[HourChunk]]:
        """The reported facts of the conversations opened in [start, end), and of their
        waits, by hour of opening (hours without rows left out): the columns of
        columnar.CONVERSATION_COLUMNS and WAIT_COLUMNS as arrays (opening times in
        microseconds from the hour), dimensions as lists of values."""
        # One string per dimension: PostgreSQL builds and asyncpg hands over a text array of
        # the same values about three times slower.
        dimensions = ", ".join(
            f"string_agg(coalesce(c.{d}, chr({NO_VALUE})), chr({SEPARATOR})) AS {d}"
            for d in DIMENSIONS
        )
        hour = HOUR.format("c.opened_at")
        opened = (
            f"array_send(array_agg(round(date_part('epoch', c.opened_at - {hour}) * 1e6)::int8))"
        )
        window = "c.opened_at >= :start AND c.opened_at < :end GROUP BY 1 ORDER BY 1"
        params = {"start": start, "end": end}
        conversations = await self.session.execute(
            text(f"""SELECT {hour} AS hour, count(*) AS rows, {opened} AS opened_us,
                       array_send(array_agg(coalesce(c.resolution_s, 'NaN'))) AS resolution_s,
                       array_send(array_agg(coalesce(c.resolution_bs, 'NaN'))) AS resolution_bs,
                       array_send(array_agg(coalesce(c.queue_wait_s, 'NaN'))) AS queue_wait_s,
                       array_send(array_agg(coalesce(c.queue_wait_bs, 'NaN'))) AS queue_wait_bs,
                       array_send(array_agg(c.assignments)) AS assignments,
                       array_send(array_agg(c.customer_messages + c.agent_replies)) AS messages,
                       array_send(array_agg(coalesce(s.score, 'NaN'::float8))) AS csat,
                       {dimensions}
                     FROM metrics.conversations c
                     LEFT JOIN metrics.csat s USING (conversation_id)
                     WHERE {window}"""),
            params,
        )
        waits = await self.session.execute(
            text(f"""SELECT {hour} AS hour, count(*) AS rows, {opened} AS opened_us,
                       array_send(array_agg(c.seconds)) AS seconds,
                       array_send(array_agg(c.business_seconds)) AS business_seconds,
                       array_send(array_agg(c.kind = 'first')) AS first,
                       {dimensions}
                     FROM metrics.waits c WHERE {window}"""),
            params,
        )
        return (
            [_hour_chunk(r, CONVERSATION_COLUMNS) for r in conversations],
            [_hour_chunk(r, WAIT_COLUMNS) for r in waits],
        )
