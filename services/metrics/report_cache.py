"""Reports over the reported facts held in memory as columns, read again only where they
changed since the previous report.

A month of a busy desk is a million conversations. Sorting them in PostgreSQL for exact
percentiles took 1 to 3 s per report on a 2-core machine, most of it per-row work in the
executor (reading wide rows, one aggregate call per row per figure, sorts). Here the columns a
report reads live in numpy arrays, in chunks by hour of the conversations' opening, and
``columnar.compute`` does the rest in milliseconds.

The copy is exact, never stale: every report first opens a repeatable-read snapshot, asks
which hours changed in a transaction that the previous report's snapshot could not see
(``ReportStore.changed_hours``, fed by the triggers of migration 0009), reads those hours
again from the same snapshot, and computes from the chunks. A report therefore sees exactly
what a query in that snapshot would. The first report (or ``warm``, at start) reads every
hour. Hours, not days: what changes between two reports is mostly recent, so a report after a
busy minute reads a few thousand rows again, not a day's.

Memory is bounded by a window (``SWITCHBOARD_REPORT_WINDOW_DAYS``): only the hours opened in
the last days are held, older ones are dropped as the window moves on. A report that reaches
before the window reads those hours from PostgreSQL, in its own snapshot, for itself alone:
as exact, and slower (``Reach`` says which it was). A new process reads the window only, so it
answers within seconds however long the history."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
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
    from_us,
    to_us,
)
from services.metrics.report import DIMENSIONS, Clock, Filters, ReportRow
from services.metrics.report_store import HourChunk, ReportStore
from services.metrics.sla_store import SlaStore

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


@dataclass(frozen=True)
class Reach:
    """Where a report's figures came from: the window held in memory starts at
    ``window_start`` (None: all history is held), and ``read_from_postgres`` when the report
    reached before it."""

    window_start: datetime | None
    read_from_postgres: bool


def _concat(a: Columns, b: Columns) -> Columns:
    return {n: np.concatenate([a[n], b[n]]) for n in a}


class ReportCache:
    """The reported columns of the conversations and waits opened within the window, by hour
    of opening; one per metrics process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        window: timedelta | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._window = window
        self._now = now
        self._codes = Codes()
        self._conversations = Table.empty(CONVERSATION_COLUMNS)
        self._waits = Table.empty(WAIT_COLUMNS)
        self._since: int | None = None  # no change before this transaction is missing
        self._lock = asyncio.Lock()

    @property
    def held(self) -> int:
        """Conversations whose columns are held in memory."""
        return self._conversations.size

    def window_start(self) -> datetime | None:
        """The first hour held in memory (None: every hour is)."""
        if self._window is None:
            return None
        start = self._now() - self._window
        return from_us(to_us(start) // HOUR_US * HOUR_US)

    def reach(self, filters: Filters) -> Reach:
        """Whether a report of ``filters`` reaches before the window (read from PostgreSQL)."""
        start = self.window_start()
        return Reach(start, start is not None and (filters.start is None or filters.start < start))

    async def warm(self) -> None:
        """Read every hour of the window now rather than on the first report."""
        await self._current(Filters(start=self.window_start()))

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
        rows = await asyncio.to_thread(run)
        if self.reach(filters).read_from_postgres:
            # The hours read for this report alone are freed: give their heap back.
            del convs, waits
            _give_back_memory()
        return rows

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
        policies, brought up to date in one snapshot (hours before the window read from it
        for this report alone)."""
        first = to_us(filters.start) // HOUR_US if filters.start else -(2**62)
        last = (to_us(filters.end) - 1) // HOUR_US if filters.end else 2**62
        async with self._lock, self._sessions() as session, session.begin():
            store = ReportStore(session)
            xmin = await store.begin_report()
            held_from = self.window_start()
            if self._since is None:  # nothing read yet (tables stay empty until a read ends)
                stale = await store.opened_hours(since=held_from)
            else:
                stale = await store.changed_hours(self._since)
                if held_from is not None:
                    stale = [h for h in stale if h >= held_from]
            if held_from is not None:
                oldest = to_us(held_from) // HOUR_US
                if self._conversations.keys and self._conversations.keys[0] < oldest:
                    self._conversations = self._conversations.after(oldest)
                    self._waits = self._waits.after(oldest)
            if stale:
                conversations, waits = await self._read_hours(store, stale)
                self._conversations = self._conversations.replace(conversations)
                self._waits = self._waits.replace(waits)
                if len(stale) > RUN_HOURS:
                    _give_back_memory()
            self._since = xmin
            tables = (self._conversations.between(first, last), self._waits.between(first, last))
            if held_from is not None and first < to_us(held_from) // HOUR_US:
                past = [h for h in await store.opened_hours() if h < held_from]
                past = [h for h in past if first <= to_us(h) // HOUR_US <= last]
                if past:
                    convs, wts = await self._read_hours(store, past)
                    older = (
                        Table.empty(CONVERSATION_COLUMNS).replace(convs).columns,
                        Table.empty(WAIT_COLUMNS).replace(wts).columns,
                    )
                    tables = (_concat(older[0], tables[0]), _concat(older[1], tables[1]))
            policies = await SlaStore(session).policies()  # in the same snapshot
        return tables, policies

    async def _read_hours(
        self, store: ReportStore, hours: list[datetime]
    ) -> tuple[dict[int, Columns], dict[int, Columns]]:
        """These hours' rows, conversations and waits by hour, a run of consecutive hours per
        query."""
        started = time.perf_counter()
        conversations: dict[int, Columns] = {}
        waits: dict[int, Columns] = {}
        runs = iter(_runs(hours))

        async def reader(store: ReportStore) -> None:
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
                other = ReportStore(session)
                await other.use_snapshot(snapshot)
                await asyncio.gather(reader(store), reader(other))
        log.log(
            logging.INFO if len(hours) > RUN_HOURS else logging.DEBUG,
            "report columns read",
            extra={
                "hours": len(hours),
                "conversations": sum(len(c["opened_us"]) for c in conversations.values()),
                "waits": sum(len(w["opened_us"]) for w in waits.values()),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return conversations, waits


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
