"""Report figures computed from the facts held as columns (numpy arrays): pure functions of
the columns, the filters and the SLA targets.

Two tables feed a report. Conversations: one row per conversation (resolution and queue
wait, reassignments, messages, CSAT). Waits: one row per answered customer wait (the first
response of each episode, and next replies). Both carry the conversation's opening time and
the dimensions a report filters and groups by, as integer codes (``Codes``).

Percentiles are exact and nearest-rank: each group's values are sorted and the value at
``figures.rank`` taken. Sums run over the sorted values, so a figure does not depend on the
order rows were read in (a replay gives identical figures)."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from services.metrics.figures import PERCENTILES, Figures, rank
from services.metrics.report import DIMENSIONS, INTERVAL_SECONDS, Clock, ReportRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Time buckets start at whole multiples of their width from this origin (midnight UTC).
BUCKET_ORIGIN_US = 946_684_800_000_000  # 2000-01-01 00:00:00 UTC
NO_FIGURES = Figures(0, None, None, None, None, None, None, None)

Array = npt.NDArray[Any]
# Columns of one table: equal-length arrays by name.
Columns = dict[str, Array]

CONVERSATION_COLUMNS = {
    "opened_us": np.int64,
    "resolution_s": np.float64,
    "resolution_bs": np.float64,
    "queue_wait_s": np.float64,
    "queue_wait_bs": np.float64,
    "assignments": np.int32,
    "messages": np.int32,
    "csat": np.float64,
}
WAIT_COLUMNS = {
    "opened_us": np.int64,
    "seconds": np.float64,
    "business_seconds": np.float64,
    "first": np.bool_,
}


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class Codes:
    """Each dimension's values as small integers, shared by every chunk of columns; 0 stands
    for no value. Codes are only ever added, so a code read earlier keeps its meaning."""

    def __init__(self) -> None:
        self.values: dict[str, list[str | None]] = {d: [None] for d in DIMENSIONS}
        self._codes: dict[str, dict[str | None, int]] = {d: {None: 0} for d in DIMENSIONS}

    def encode(self, dimension: str, values: Sequence[str | None]) -> Array:
        codes, known = self._codes[dimension], self.values[dimension]
        try:  # values seen before: the common case, and the fast one
            return np.fromiter(map(codes.__getitem__, values), dtype=np.int32, count=len(values))
        except KeyError:
            for value in set(values) - codes.keys():
                codes[value] = len(known)
                known.append(value)
            return np.fromiter(map(codes.__getitem__, values), dtype=np.int32, count=len(values))

    def code(self, dimension: str, value: str) -> int | None:
        """The code of a value, or None if no row has it."""
        return self._codes[dimension].get(value)


@dataclass(frozen=True)
class Targets:
    """SLA targets (seconds) by the codes of priority and channel, NaN where none applies."""

    first_response: Array
    resolution: Array

    @classmethod
    def of(cls, policies: Iterable[Mapping[str, Any]], codes: Codes) -> Targets:
        """A priority's policy for the channel, else its policy for any channel ('*')."""
        by_key = {(p["priority"], p["channel"]): p for p in policies}
        priorities, channels = codes.values["priority"], codes.values["channel"]
        frt = np.full((len(priorities), len(channels)), np.nan)
        res = np.full((len(priorities), len(channels)), np.nan)
        for i, priority in enumerate(priorities):
            for j, channel in enumerate(channels):
                policy = by_key.get((priority, channel)) or by_key.get((priority, "*"))
                if policy is not None:
                    frt[i, j] = policy["first_response_target_s"]
                    res[i, j] = policy["resolution_target_s"]
        return cls(frt, res)

    @staticmethod
    def lookup(table: Array, rows: Selected) -> Array:
        found: Array = table[rows["priority"], rows["channel"]]
        return found


@dataclass(frozen=True)
class Selection:
    """Which rows a report covers: opened in [start_us, end_us), with these dimension codes."""

    start_us: int | None
    end_us: int | None
    dimensions: dict[str, int]

    def mask(self, rows: Columns) -> Array:
        opened = rows["opened_us"]
        keep = np.ones(len(opened), dtype=bool)
        if self.start_us is not None:
            keep &= opened >= self.start_us
        if self.end_us is not None:
            keep &= opened < self.end_us
        for dimension, value in self.dimensions.items():
            keep &= rows[dimension] == value
        return keep


class Selected:
    """The columns of the selected rows, each copied out when first used (a report reads
    a few of them; without a filter, none is copied)."""

    def __init__(self, rows: Columns, keep: Array) -> None:
        self._rows = rows
        self._keep: Array | None = None if keep.all() else keep
        self._columns: Columns = {}
        self.size = len(rows["opened_us"]) if self._keep is None else int(keep.sum())

    def __getitem__(self, name: str) -> Array:
        column = self._columns.get(name)
        if column is None:
            column = self._rows[name]
            if self._keep is not None:
                column = column[self._keep]
            self._columns[name] = column
        return column


@dataclass(frozen=True)
class Table:
    """A table's columns in chunks (the rows opened in one hour, say) kept in key order."""

    columns: Columns
    keys: tuple[int, ...]
    bounds: tuple[int, ...]  # where each chunk's rows start, and the end

    @classmethod
    def empty(cls, dtypes: Mapping[str, Any]) -> Table:
        names = list(dtypes) + list(DIMENSIONS)
        return cls({n: np.empty(0, dtype=dtypes.get(n, np.int32)) for n in names}, (), (0,))

    def replace(self, chunks: Mapping[int, Columns]) -> Table:
        """This table with the rows of some chunks replaced (by no rows, when empty)."""
        pieces = {
            key: {n: c[self.bounds[i] : self.bounds[i + 1]] for n, c in self.columns.items()}
            for i, key in enumerate(self.keys)
        }
        pieces |= chunks
        kept = sorted(key for key, piece in pieces.items() if len(piece["opened_us"]))
        if not kept:
            return Table({n: c[:0] for n, c in self.columns.items()}, (), (0,))
        columns = {n: np.concatenate([pieces[key][n] for key in kept]) for n in self.columns}
        sizes = [len(pieces[key]["opened_us"]) for key in kept]
        return Table(columns, tuple(kept), tuple(itertools.accumulate(sizes, initial=0)))

    def after(self, first: int) -> Table:
        """This table without the chunks before key ``first``."""
        i = bisect.bisect_left(self.keys, first)
        lo = self.bounds[i]
        return Table(
            {n: c[lo:].copy() for n, c in self.columns.items()},
            self.keys[i:],
            tuple(b - lo for b in self.bounds[i:]),
        )

    def between(self, first: int, last: int) -> Columns:
        """The rows of the chunks with keys from first to last (views, not copies)."""
        lo = self.bounds[bisect.bisect_left(self.keys, first)]
        hi = self.bounds[bisect.bisect_right(self.keys, last)]
        return {n: c[lo:hi] for n, c in self.columns.items()}

    @property
    def size(self) -> int:
        return self.bounds[-1]


@dataclass(frozen=True)
class Groups:
    """The group of each row of a table, and the rows in group order: ``order`` lists the
    rows of group 0, then of group 1..., each group ending at its ``ends``. ``ids`` and
    ``order`` are None when every row is in the one group."""

    ids: Array | None
    order: Array | None
    ends: Array

    @classmethod
    def one(cls, rows: int) -> Groups:
        return cls(None, None, np.array([rows]))

    @classmethod
    def of(cls, ids: Array, n: int) -> Groups:
        # numpy sorts 16-bit integers by radix: the grouping sort costs a few milliseconds.
        order = np.argsort(ids.astype(np.int16 if n < 2**15 else np.int64), kind="stable")
        return cls(ids, order, np.cumsum(np.bincount(ids, minlength=n)))

    @property
    def n(self) -> int:
        return len(self.ends)

    def sums(self, weights: Array) -> Array:
        """Per group, the sum of the weights of its rows (booleans count)."""
        if self.ids is None:
            return np.array([np.sum(weights, dtype=np.float64)])
        return np.bincount(self.ids, weights=weights, minlength=self.n)

    def sizes(self) -> Array:
        return np.diff(self.ends, prepend=0)


def _group_keys(
    tables: Sequence[Selected], group_by: tuple[str, ...], width_us: int | None, codes: Codes
) -> tuple[list[Groups], Array]:
    """Each table's groups, and each group's key parts (a row per group: bucket number
    first, then the dimension codes), groups ordered by key."""
    if not group_by and width_us is None:
        return [Groups.one(t.size) for t in tables], np.zeros((1, 0), np.int64)
    parts: list[list[Array]] = [[] for _ in tables]
    radices: list[int] = []
    if width_us is not None:
        buckets = [(t["opened_us"] - BUCKET_ORIGIN_US) // width_us for t in tables]
        low = min((int(b.min()) for b in buckets if len(b)), default=0)
        high = max((int(b.max()) for b in buckets if len(b)), default=0)
        for part, b in zip(parts, buckets, strict=True):
            part.append(b - low)
        radices.append(high - low + 1)
    for dimension in group_by:
        for part, t in zip(parts, tables, strict=True):
            part.append(t[dimension].astype(np.int64))
        radices.append(len(codes.values[dimension]))
    possible = math.prod(radices)
    if possible >= 2**62:
        raise ValueError(f"too many groups: {radices}")
    combined = []
    for part, t in zip(parts, tables, strict=True):
        key = np.zeros(t.size, dtype=np.int64)
        for p, radix in zip(part, radices, strict=True):
            key = key * radix + p
        combined.append(key)
    every = np.concatenate(combined)
    if possible <= 4 * len(every) + 1024:
        # Few possible keys: number the keys present by counting, without a sort.
        present = np.bincount(every, minlength=possible) > 0
        unique, inverse = np.flatnonzero(present), (np.cumsum(present) - 1)[every]
    else:
        unique, inverse = np.unique(every, return_inverse=True)
    sizes = np.cumsum([0] + [len(k) for k in combined])
    ids = [Groups.of(inverse[sizes[i] : sizes[i + 1]], len(unique)) for i in range(len(combined))]
    decoded = np.empty((len(unique), len(radices)), dtype=np.int64)
    rest = unique.copy()
    for i in range(len(radices) - 1, -1, -1):
        rest, decoded[:, i] = np.divmod(rest, radices[i])
    if width_us is not None and len(unique):
        decoded[:, 0] += low
    return ids, decoded


def figures_by_group(values: Array, groups: Groups) -> list[Figures]:
    """Count, mean, min, max and exact nearest-rank percentiles of the values (NaN is no
    value) of each group."""
    by_group = values if groups.order is None else values[groups.order]
    starts = groups.ends - groups.sizes()
    out = [NO_FIGURES] * groups.n
    for g, (start, end) in enumerate(zip(starts, groups.ends, strict=True)):
        ordered = np.sort(by_group[start:end])
        n = int(np.count_nonzero(~np.isnan(ordered)))  # sorting puts NaN (no value) last
        if n == 0:
            continue
        ordered = ordered[:n]
        p50, p90, p95, p99 = (float(ordered[rank(p, n) - 1]) for p in PERCENTILES)
        out[g] = Figures(
            count=n,
            mean=float(ordered.sum()) / n,
            min=float(ordered[0]),
            max=float(ordered[-1]),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
        )
    return out


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _attainment(measured: Array, target: Array, groups: Groups) -> tuple[Array, Array]:
    """Per group: rows with a target and a measured time that met it, and rows with both
    (a comparison with NaN, no target or no time, is false)."""
    return groups.sums(measured <= target), groups.sums(~np.isnan(target) & ~np.isnan(measured))


def compute(
    conversations: Columns,
    waits: Columns,
    *,
    selection: Selection,
    targets: Targets,
    codes: Codes,
    group_by: tuple[str, ...] = (),
    interval: str | None = None,
    clock: Clock = "calendar",
) -> list[ReportRow]:
    """Figures of every measure per group (and time bucket), in key order; one row for
    the whole selection when neither is asked for."""
    convs = Selected(conversations, selection.mask(conversations))
    wts = Selected(waits, selection.mask(waits))
    width_us = INTERVAL_SECONDS[interval] * 1_000_000 if interval else None
    (gc, gw), keys = _group_keys((convs, wts), group_by, width_us, codes)
    n = len(keys)
    business = clock == "business"
    resolution = convs["resolution_bs" if business else "resolution_s"]
    seconds = wts["business_seconds" if business else "seconds"]
    first = wts["first"]
    measures = {
        "resolution_s": figures_by_group(resolution, gc),
        "queue_wait_s": figures_by_group(
            convs["queue_wait_bs" if business else "queue_wait_s"], gc
        ),
        "first_response_s": figures_by_group(np.where(first, seconds, np.nan), gw),
        "next_reply_s": figures_by_group(np.where(first, np.nan, seconds), gw),
    }
    count = gc.sizes()
    reassignments = gc.sums(np.maximum(convs["assignments"] - 1, 0))
    messages = gc.sums(convs["messages"])
    csat = convs["csat"]
    rated = ~np.isnan(csat)
    csat_count = gc.sums(rated)
    csat_sum = gc.sums(np.where(rated, csat, 0.0))
    res_met, res_rated = _attainment(resolution, Targets.lookup(targets.resolution, convs), gc)
    frt_target = np.where(first, Targets.lookup(targets.first_response, wts), np.nan)
    frt_met, frt_rated = _attainment(seconds, frt_target, gw)

    rows = []
    for g in range(n):
        key = keys[g]
        dims = key[1:] if interval else key
        rows.append(
            ReportRow(
                group={d: codes.values[d][int(c)] for d, c in zip(group_by, dims, strict=True)},
                conversations=int(count[g]),
                measures={name: figures[g] for name, figures in measures.items()},
                reassignments_mean=_ratio(reassignments[g], count[g]),
                messages_mean=_ratio(messages[g], count[g]),
                bucket=from_us(BUCKET_ORIGIN_US + int(key[0]) * width_us) if width_us else None,
                extra={
                    "sla_first_response_attainment": _ratio(frt_met[g], frt_rated[g]),
                    "sla_resolution_attainment": _ratio(res_met[g], res_rated[g]),
                    "csat_count": int(csat_count[g]),
                    "csat_mean": _ratio(csat_sum[g], csat_count[g]),
                },
            )
        )
    return sorted(rows, key=lambda r: _order(r, group_by))


def _order(row: ReportRow, group_by: tuple[str, ...]) -> list[tuple[bool, Any]]:
    """Key order: bucket first, then each dimension, no value last."""
    key = ([row.bucket] if row.bucket is not None else []) + [row.group[d] for d in group_by]
    return [(v is None, v) for v in key]
