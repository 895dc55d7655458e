"""Reports over the reported facts held in memory as columns, read again only where they
changed since the previous report.

A month of a busy desk is a million conversations. Sorting them in PostgreSQL for exact
percentiles took 1 to 3 s per report on a 2-core machine, most of it per-row work in the
executor (reading wide rows, one aggregate call per row per figure, sorts). Here the columns a
report reads live in numpy arrays, in chunks by hour of the conversations' opening, and
``columnar.compute`` does the rest in milliseconds.

The copy is exact, never stale: every report first opens a repeatable-read snapshot, asks
which hours changed in a transaction that the previous report's snapshot could not see
(``MetricsStore.changed_hours``, fed by the triggers of migration 0009), reads those hours
again from the same snapshot, and computes from the chunks. A report therefore sees exactly
what a query in that snapshot would. The first report (or ``warm``, at start) reads every
hour. Hours, not days: what changes between two reports is mostly recent, so a report after a
busy minute reads a few thousand rows again, not a day's."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics.columnar import (
    CONVERSATION_COLUMNS,
    WAIT_COLUMNS,
    Codes,
    Columns,
    Selection,
    Table,
    Targets,
    compute,
    to_us,
)
from services.metrics.report import DIMENSIONS, Clock, ReportRow
from services.metrics.store import Filters, HourChunk, MetricsStore

log = logging.getLogger(__name__)


HOUR_US = 3_600_000_000
# Hours read by one query; a read of more (the first one) uses a second connection.
RUN_HOURS = 24
EMPTY_CONVERSATIONS = Table.empty(CONVERSATION_COLUMNS).columns
EMPTY_WAITS = Table.empty(WAIT_COLUMNS).columns


def _columns(chunk: HourChunk, codes: Codes) -> tuple[int, Columns]:
    """An hour's number and its columns as the report reads them: opening times from the
    epoch, dimensions as codes."""
    hour_us = to_us(chunk.hour)
    columns = dict(chunk.columns)
    columns["opened_us"] = columns["opened_us"] + hour_us
    for dimension in DIMENSIONS:
        columns[dimension] = codes.encode(dimension, columns[dimension])
    return hour_us // HOUR_US, columns


class ReportCache:
    """The reported columns of every conversation and wait, by hour of opening; one per
    metrics process."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._codes = Codes()
        self._conversations = Table.empty(CONVERSATION_COLUMNS)
        self._waits = Table.empty(WAIT_COLUMNS)
        self._since: int | None = None  # no change before this transaction is missing
        self._lock = asyncio.Lock()

    async def warm(self) -> None:
        """Read every hour now rather than on the first report."""
        await self._current(Filters())

    async def report(
        self,
        filters: Filters,
        *,
        group_by: tuple[str, ...] = (),
        interval: str | None = None,
        clock: Clock = "calendar",
    ) -> list[ReportRow]:
        """Figures of every measure, per group (and per time bucket)."""
        (rows,) = await self._reports(filters, [(group_by, interval)], clock)
        return rows

    async def summary(
        self, filters: Filters, *, group_by: tuple[str, ...], clock: Clock
    ) -> tuple[ReportRow, list[ReportRow]]:
        """The figures of the whole selection and, when ``group_by`` is given, of each group:
        both from one snapshot."""
        asked: list[tuple[tuple[str, ...], str | None]] = [((), None)]
        if group_by:
            asked.append((group_by, None))
        (total,), *grouped = await self._reports(filters, asked, clock)
        return total, grouped[0] if grouped else []

    async def _reports(
        self,
        filters: Filters,
        asked: list[tuple[tuple[str, ...], str | None]],
        clock: Clock,
    ) -> list[list[ReportRow]]:
        (convs, waits), policies = await self._current(filters)
        selection = self._selection(filters)

        def run() -> list[list[ReportRow]]:
            # After the columns were taken: every code in them is in the targets' tables.
            targets = Targets.of(policies, self._codes)
            return [
                compute(
                    convs,
                    waits,
                    selection=selection,
                    targets=targets,
                    codes=self._codes,
                    group_by=group_by,
                    interval=interval,
                    clock=clock,
                )
                for group_by, interval in asked
            ]

        # numpy releases the GIL while it sorts: the event loop keeps serving meanwhile.
        return await asyncio.to_thread(run)

    def _selection(self, filters: Filters) -> Selection:
        dimensions = {}
        for dimension, value in filters.dimensions().items():
            code = self._codes.code(dimension, value)
            dimensions[dimension] = -1 if code is None else code  # -1: no row has it
        return Selection(
            start_us=to_us(filters.start) if filters.start else None,
            end_us=to_us(filters.end) if filters.end else None,
            dimensions=dimensions,
        )

    async def _current(
        self, filters: Filters
    ) -> tuple[tuple[Columns, Columns], list[dict[str, Any]]]:
        """The columns of the hours ``filters`` covers, conversations and waits, and the SLA
        policies, brought up to date in one snapshot."""
        async with self._lock, self._sessions() as session, session.begin():
            store = MetricsStore(session)
            xmin = await store.begin_report()
            if self._since is None:  # nothing read yet (tables stay empty until a read ends)
                stale = await store.opened_hours()
            else:
                stale = await store.changed_hours(self._since)
            if stale:
                await self._read(store, stale)
                if len(stale) > RUN_HOURS:
                    _give_back_memory()
            self._since = xmin
            policies = await store.policies()
        first = to_us(filters.start) // HOUR_US if filters.start else -(2**62)
        last = (to_us(filters.end) - 1) // HOUR_US if filters.end else 2**62
        tables = (self._conversations.between(first, last), self._waits.between(first, last))
        return tables, policies

    async def _read(self, store: MetricsStore, hours: list[datetime]) -> None:
        """Read these hours' rows again, a run of consecutive hours per query."""
        started = time.perf_counter()
        conversations: dict[int, Columns] = {}
        waits: dict[int, Columns] = {}
        runs = iter(_runs(hours))

        async def reader(store: MetricsStore) -> None:
            for start, end in runs:
                convs_rows, waits_rows = await store.hour_columns(start, end)
                for hour in range(to_us(start) // HOUR_US, to_us(end) // HOUR_US):
                    conversations[hour] = EMPTY_CONVERSATIONS
                    waits[hour] = EMPTY_WAITS
                conversations.update(_columns(c, self._codes) for c in convs_rows)
                waits.update(_columns(w, self._codes) for w in waits_rows)

        if len(hours) <= RUN_HOURS:
            await reader(store)
        else:
            # Many hours (the first read): a second connection in the same snapshot reads
            # the next run while this process decodes the previous one.
            snapshot = await store.export_snapshot()
            async with self._sessions() as session, session.begin():
                other = MetricsStore(session)
                await other.use_snapshot(snapshot)
                await asyncio.gather(reader(store), reader(other))
        self._conversations = self._conversations.replace(conversations)
        self._waits = self._waits.replace(waits)
        log.log(
            logging.INFO if len(hours) > RUN_HOURS else logging.DEBUG,
            "report columns read",
            extra={
                "hours": len(hours),
                "conversations": self._conversations.size,
                "waits": self._waits.size,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )


def _give_back_memory() -> None:
    """Return the heap a large read freed to the system. The hours' small arrays and the
    decoded strings come from the C heap, which glibc keeps after they are freed: 1M
    conversations left the process at 477 MiB resident, 288 MiB after this."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim, or the allocator returns memory by itself


def _runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Ascending hours as [start, end) runs of consecutive hours, RUN_HOURS at most each."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour and hour - runs[-1][0] < timedelta(hours=RUN_HOURS):
            runs[-1] = (runs[-1][0], hour + timedelta(hours=1))
        else:
            runs.append((hour, hour + timedelta(hours=1)))
    return runs
