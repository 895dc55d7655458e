from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from services.metrics.exposition import BUCKETS_S, HistogramRow, families, render
from services.metrics.figures import percentile, summarize


def test_percentiles_are_nearest_rank_over_observed_values():
    values = list(range(1, 101))
    figures = summarize(map(float, values))
    assert (figures.p50, figures.p90, figures.p95, figures.p99) == (50, 90, 95, 99)
    assert figures.mean == 50.5 and figures.min == 1 and figures.max == 100
    assert summarize([7.0]).p99 == 7.0
    assert summarize([1.0, 2.0, 3.0, 10.0]).p50 == 2.0


def test_no_values_give_a_count_of_zero_and_no_figures():
    figures = summarize([])
    assert figures.count == 0 and figures.p50 is None and figures.mean is None


@given(st.lists(st.floats(0, 1e6), min_size=1), st.floats(1, 100))
def test_a_percentile_is_always_an_observed_value_and_grows_with_p(values, p):
    ordered = sorted(values)
    assert percentile(ordered, p) in ordered
    assert percentile(ordered, p) <= percentile(ordered, min(p + 10, 100))


def test_exposition_parses_with_prometheus_own_parser_and_buckets_are_cumulative():
    bounds = len(BUCKETS_S)
    chat = HistogramRow(("chat", "urgent"), [1] + [2] * (bounds - 1), count=2, total=48.0)
    email = HistogramRow(("email", "low"), [0] * 8 + [1] * (bounds - 8), count=1, total=7200.0)
    text = render(
        families(
            {"first_response_s": [chat, email], "resolution_s": []},
            {
                "chat": {"opened": 2, "resolved": 2, "messages": 5},
                "email": {"opened": 1, "resolved": 0, "messages": 1},
            },
        )
    ).decode()
    parsed = {m.name: m for m in text_string_to_metric_families(text)}
    frt = parsed["switchboard_first_response_seconds"]
    by_le = {
        s.labels["le"]: s.value
        for s in frt.samples
        if s.name.endswith("_bucket") and s.labels["channel"] == "chat"
    }
    assert by_le["5.0"] == 1 and by_le["60.0"] == 2 and by_le["+Inf"] == 2
    assert sorted(s.value for s in frt.samples if s.name.endswith("_count")) == [1, 2]
    resolved = parsed["switchboard_conversations_resolved"]
    assert {
        s.labels["channel"]: s.value for s in resolved.samples if s.name.endswith("_total")
    } == {"chat": 2, "email": 0}
    for metric in parsed.values():
        for sample in metric.samples:
            assert set(sample.labels) <= {"channel", "priority", "le", "status"}
