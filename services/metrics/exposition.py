"""The Prometheus view of the facts: histograms and counters with bounded label sets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from services.metrics.figures import ConversationFacts

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


def _histogram(
    name: str, doc: str, samples: Iterable[tuple[tuple[str, str], float]]
) -> HistogramMetricFamily:
    by_labels: dict[tuple[str, str], list[float]] = defaultdict(list)
    for labels, value in samples:
        by_labels[labels].append(value)
    family = HistogramMetricFamily(name, doc, labels=["channel", "priority"])
    for labels, values in sorted(by_labels.items()):
        cumulative = [(_le(b), float(sum(1 for v in values if v <= b))) for b in BUCKETS_S]
        cumulative.append(("+Inf", float(len(values))))
        family.add_metric(list(labels), cumulative, sum_value=sum(values))
    return family


def _le(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def _counter(name: str, doc: str, keys: Iterable[str]) -> CounterMetricFamily:
    counts: dict[str, int] = defaultdict(int)
    for k in keys:
        counts[k] += 1
    family = CounterMetricFamily(name, doc, labels=["channel"])
    for channel, n in sorted(counts.items()):
        family.add_metric([channel], n)
    return family


def families(facts: Sequence[ConversationFacts], customer_messages: dict[str, int]) -> list[Metric]:
    """Every metric family of one scrape, computed from the conversation facts."""

    def labels(f: ConversationFacts) -> tuple[str, str]:
        return (f.channel, f.priority or "unclassified")

    frt = [(labels(f), v) for f in facts if (v := f.first_response_s) is not None]
    resolution = [(labels(f), v) for f in facts if (v := f.resolution_s) is not None]
    messages = CounterMetricFamily(
        "switchboard_customer_messages", "Customer messages received.", labels=["channel"]
    )
    for channel, n in sorted(customer_messages.items()):
        messages.add_metric([channel], n)
    return [
        _histogram(
            "switchboard_first_response_seconds",
            "First agent reply minus first customer message.",
            frt,
        ),
        _histogram("switchboard_resolution_seconds", "Resolved minus opened.", resolution),
        _counter(
            "switchboard_conversations_opened",
            "Conversations opened.",
            (f.channel for f in facts if f.opened_at is not None),
        ),
        _counter(
            "switchboard_conversations_resolved",
            "Conversations resolved.",
            (f.channel for f in facts if f.resolved_at is not None),
        ),
        messages,
    ]


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
