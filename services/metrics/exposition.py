"""The Prometheus view of the facts: histograms and counters with bounded label sets."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

# Support work spans seconds (urgent chat) to days (email backlogs).
BUCKETS_S: tuple[float, ...] = (
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
    172800,
    604800,
)


@dataclass(frozen=True)
class HistogramRow:
    """One label set of a histogram: cumulative counts per bound of BUCKETS_S."""

    labels: tuple[str, str]  # (channel, priority)
    cumulative: list[int]
    count: int
    total: float


@dataclass(frozen=True)
class ScrapeCount:
    """One row of the scrape's counters (ScrapeStore.counts): for a histogram (kind
    first_response_s or resolution_s), the values in one bucket (``bucket``: the index of the
    first bound of BUCKETS_S at or above them, len(BUCKETS_S) past the last) and their sum;
    for a counter (opened, resolved, messages, breached), bucket 0 and the count."""

    kind: str
    channel: str
    priority: str
    bucket: int
    n: int
    total: float


Aggregates = tuple[
    dict[str, list[HistogramRow]], dict[str, dict[str, int]], dict[tuple[str, str], int]
]
HISTOGRAMS = ("first_response_s", "resolution_s")
COUNTERS = ("opened", "resolved", "messages")


def aggregates(rows: Iterable[ScrapeCount]) -> Aggregates:
    """The histograms, counts per channel and breaches per label set that ``families`` takes,
    from the scrape's counters."""
    buckets: dict[str, dict[tuple[str, str], list[int]]] = {k: {} for k in HISTOGRAMS}
    sums: dict[tuple[str, str, str], float] = {}
    counts: dict[str, dict[str, int]] = {}
    breaches: dict[tuple[str, str], int] = {}
    for row in rows:
        labels = (row.channel, row.priority)
        if row.kind in buckets:
            per = buckets[row.kind].setdefault(labels, [0] * (len(BUCKETS_S) + 1))
            per[row.bucket] += row.n
            sums[(row.kind, *labels)] = sums.get((row.kind, *labels), 0.0) + row.total
        elif row.kind == "breached":
            breaches[labels] = breaches.get(labels, 0) + row.n
        elif row.kind in COUNTERS:
            per_channel = counts.setdefault(row.channel, dict.fromkeys(COUNTERS, 0))
            per_channel[row.kind] += row.n
    histograms = {
        kind: [
            HistogramRow(
                labels=labels,
                cumulative=list(itertools.accumulate(per[: len(BUCKETS_S)])),
                count=sum(per),
                total=sums.get((kind, *labels), 0.0),
            )
            for labels, per in sorted(by_label.items())
            if sum(per)
        ]
        for kind, by_label in buckets.items()
    }
    return histograms, counts, {k: n for k, n in breaches.items() if n}


def _histogram(name: str, doc: str, rows: Iterable[HistogramRow]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["channel", "priority"])
    for row in rows:
        buckets = [(_le(b), float(n)) for b, n in zip(BUCKETS_S, row.cumulative, strict=True)]
        buckets.append(("+Inf", float(row.count)))
        family.add_metric(list(row.labels), buckets, sum_value=row.total)
    return family


def _le(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def _counter(name: str, doc: str, per_channel: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["channel"])
    for channel, n in sorted(per_channel.items()):
        family.add_metric([channel], n)
    return family


def families(
    histograms: dict[str, list[HistogramRow]],
    counts: dict[str, dict[str, int]],
    breaches: dict[tuple[str, str], int] | None = None,
    queues: list[dict[str, Any]] | None = None,
    agents: list[dict[str, Any]] | None = None,
) -> list[Metric]:
    """Every metric family of one scrape, from aggregates (label sets stay bounded: channel and
    priority only, never a conversation or a customer)."""

    def per(kind: str) -> dict[str, int]:
        return {channel: c[kind] for channel, c in counts.items()}

    return [
        _histogram(
            "switchboard_first_response_seconds",
            "First agent reply minus first customer message.",
            histograms.get("first_response_s", []),
        ),
        _histogram(
            "switchboard_resolution_seconds",
            "Resolved minus opened.",
            histograms.get("resolution_s", []),
        ),
        _counter("switchboard_conversations_opened", "Conversations opened.", per("opened")),
        _counter("switchboard_conversations_resolved", "Conversations resolved.", per("resolved")),
        _counter("switchboard_customer_messages", "Customer messages received.", per("messages")),
        *_sla_and_queues(breaches or {}, queues or []),
        *_agents(agents or []),
    ]


def _agents(agents: list[dict[str, Any]]) -> list[Metric]:
    """Agents per status, and the load and capacity of online agents per channel."""
    per_status = dict.fromkeys(("online", "away", "offline"), 0)
    load: dict[str, int] = {}
    capacity: dict[str, int] = {}
    for agent in agents:
        per_status[agent["status"]] = per_status.get(agent["status"], 0) + 1
        if agent["status"] != "online":
            continue
        for channel, n in agent["capacity"].items():
            capacity[channel] = capacity.get(channel, 0) + n
        for channel, n in agent["load"].items():
            load[channel] = load.get(channel, 0) + n
    by_status = GaugeMetricFamily("switchboard_agents", "Agents by status.", labels=["status"])
    for status, n in per_status.items():
        by_status.add_metric([status], n)
    gauges = []
    for name, doc, values in (
        (
            "switchboard_agent_load",
            "Conversations whose slots online agents hold (offered or assigned).",
            load,
        ),
        ("switchboard_agent_capacity", "Capacity of online agents.", capacity),
    ):
        family = GaugeMetricFamily(name, doc, labels=["channel"])
        for channel, n in sorted(values.items()):
            family.add_metric([channel], n)
        gauges.append(family)
    return [by_status, *gauges]


def _sla_and_queues(
    breaches: dict[tuple[str, str], int], queues: list[dict[str, Any]]
) -> list[Metric]:
    breached = CounterMetricFamily(
        "switchboard_sla_breaches",
        "Conversations past their first-response target.",
        labels=["channel", "priority"],
    )
    for (channel, priority), n in sorted(breaches.items()):
        breached.add_metric([channel, priority], n)
    depth = GaugeMetricFamily(
        "switchboard_queue_depth",
        "Conversations waiting for an agent.",
        labels=["channel", "priority"],
    )
    oldest = GaugeMetricFamily(
        "switchboard_queue_oldest_wait_seconds",
        "Wait of the oldest conversation waiting for an agent.",
        labels=["channel", "priority"],
    )
    # The live queues come per channel, priority, skill and language: the gauges are per
    # channel and priority (bounded label sets).
    stuck = GaugeMetricFamily(
        "switchboard_conversations_stuck",
        "Conversations still waiting for an agent after their last overflow stage.",
        labels=["channel", "priority"],
    )
    depths: dict[tuple[str, str], int] = {}
    oldest_s: dict[tuple[str, str], float] = {}
    stuck_n: dict[tuple[str, str], int] = {}
    for q in queues:
        labels = (q["channel"], q["priority"])
        depths[labels] = depths.get(labels, 0) + q["depth"]
        oldest_s[labels] = max(oldest_s.get(labels, q["oldest_wait_s"]), q["oldest_wait_s"])
        stuck_n[labels] = stuck_n.get(labels, 0) + q.get("stuck", 0)
    for labels, n in sorted(depths.items()):
        depth.add_metric(list(labels), n)
        oldest.add_metric(list(labels), oldest_s[labels])
        # Every label set of the queue, 0 included: a stuck count that fell to 0 shows so.
        stuck.add_metric(list(labels), stuck_n[labels])
    return [breached, depth, oldest, stuck]


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def render(metrics: list[Metric]) -> bytes:
    """The Prometheus text exposition of ``metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(metrics))
    return generate_latest(registry)
