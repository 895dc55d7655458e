"""Percentiles for reports (nearest rank, as the metrics service computes them)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from services.metrics.figures import percentile


def pct(values: Iterable[float], p: float, *, scale: float = 1000.0) -> float | None:
    """The p-th percentile of ``values`` times ``scale`` (seconds to ms by default)."""
    ordered = sorted(values)
    return round(percentile(ordered, p) * scale, 2) if ordered else None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (the server and its backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuShare:
    """CPU used by named processes between ``start`` and ``stop``, as a share of one core
    (1.0: one core busy the whole time); PostgreSQL counts all its processes."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def _read(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        used |= {f"postgres:{pid}": cpu_seconds(pid) for pid in postgres_pids()}
        return used

    def start(self) -> None:
        self._t0, self._used0 = time.monotonic(), self._read()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        used = self._read()
        # A backend that started meanwhile counts from 0; one that ended is not counted.
        spent = {k: used[k] - self._used0.get(k, 0.0) for k in used}
        share = {name: spent[name] / elapsed for name in self.pids}
        share["postgres"] = sum(v for k, v in spent.items() if k.startswith("postgres:")) / elapsed
        return {name: round(value, 2) for name, value in share.items()}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` to two places, or None when either is missing."""
    return round(a / b, 2) if a and b else None
