"""Report figures computed from columns equal the plain definitions of figures.py, for any
rows, filters, groupings and time buckets."""

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.metrics.columnar import (
    CONVERSATION_COLUMNS,
    WAIT_COLUMNS,
    Codes,
    Selection,
    Table,
    Targets,
    compute,
    from_us,
    to_us,
)
from services.metrics.figures import summarize
from services.metrics.report import DIMENSIONS, INTERVAL_SECONDS

T0 = datetime(2026, 11, 2, tzinfo=UTC)
POLICIES = [
    {"priority": p, "channel": c, "first_response_target_s": f, "resolution_target_s": r}
    for p, c, f, r in [("urgent", "*", 60, 600), ("urgent", "email", 300, 900)]
]

seconds = st.floats(0, 5_000, allow_nan=False).map(lambda s: round(s, 3))
dims = {
    "channel": st.sampled_from(["chat", "email"]),
    "priority": st.sampled_from(["urgent", "low", None]),
    "agent_id": st.sampled_from(["alice", "bob", None]),
}
opened = st.integers(0, 3 * 86_400_000_000).map(lambda us: T0 + timedelta(microseconds=us))
conversation = st.fixed_dictionaries(
    {
        "opened": opened,
        "resolution": st.none() | seconds,
        "queue_wait": st.none() | seconds,
        "assignments": st.integers(0, 3),
        "messages": st.integers(0, 9),
        "csat": st.none() | st.integers(1, 5),
        **dims,
    }
)
wait = st.fixed_dictionaries({"opened": opened, "seconds": seconds, "first": st.booleans(), **dims})


def columns(rows, dtypes, codes, fields):
    out = {name: np.array([fields[name](r) for r in rows], dtype=dtypes[name]) for name in dtypes}
    for d in DIMENSIONS:
        out[d] = codes.encode(d, [r.get(d) for r in rows])
    return out


def conversation_columns(rows, codes):
    nan = float("nan")
    fields = {
        "opened_us": lambda r: to_us(r["opened"]),
        "resolution_s": lambda r: nan if r["resolution"] is None else r["resolution"],
        "resolution_bs": lambda r: nan if r["resolution"] is None else r["resolution"] / 2,
        "queue_wait_s": lambda r: nan if r["queue_wait"] is None else r["queue_wait"],
        "queue_wait_bs": lambda r: nan if r["queue_wait"] is None else r["queue_wait"] / 2,
        "assignments": lambda r: r["assignments"],
        "messages": lambda r: r["messages"],
        "csat": lambda r: nan if r["csat"] is None else r["csat"],
    }
    return columns(rows, CONVERSATION_COLUMNS, codes, fields)


def wait_columns(rows, codes):
    fields = {
        "opened_us": lambda r: to_us(r["opened"]),
        "seconds": lambda r: r["seconds"],
        "business_seconds": lambda r: r["seconds"] / 2,
        "first": lambda r: r["first"],
    }
    return columns(rows, WAIT_COLUMNS, codes, fields)


def target(policy_field, row):
    by_key = {(p["priority"], p["channel"]): p for p in POLICIES}
    policy = by_key.get((row["priority"], row["channel"])) or by_key.get((row["priority"], "*"))
    return policy[policy_field] if policy else None


def expected(convs, waits, *, group_by, interval, start, end, channel):
    """The report by the plain definitions: rows grouped in Python, figures.summarize."""

    def selected(r):
        return (
            (start is None or r["opened"] >= start)
            and (end is None or r["opened"] < end)
            and (channel is None or r["channel"] == channel)
        )

    def key(r):
        bucket = ()
        if interval:
            width = INTERVAL_SECONDS[interval]
            since = (r["opened"] - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(seconds=width)
            bucket = (datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=since * width),)
        return bucket + tuple(r[d] for d in group_by)

    by_key = defaultdict(lambda: ([], []))
    for r in filter(selected, convs):
        by_key[key(r)][0].append(r)
    for r in filter(selected, waits):
        by_key[key(r)][1].append(r)
    if not group_by and not interval:
        by_key[()]  # the whole selection, even when empty
    out = {}
    for k, (cs, ws) in by_key.items():
        frt = [(w["seconds"], target("first_response_target_s", w)) for w in ws if w["first"]]
        res = [(c["resolution"], target("resolution_target_s", c)) for c in cs]
        rated_res = [(v, t) for v, t in res if v is not None and t is not None]
        rated_frt = [(v, t) for v, t in frt if t is not None]
        scores = [c["csat"] for c in cs if c["csat"] is not None]
        out[k] = {
            "conversations": len(cs),
            "resolution_s": summarize(c["resolution"] for c in cs if c["resolution"] is not None),
            "queue_wait_s": summarize(c["queue_wait"] for c in cs if c["queue_wait"] is not None),
            "first_response_s": summarize(v for v, _ in frt),
            "next_reply_s": summarize(w["seconds"] for w in ws if not w["first"]),
            "reassignments_mean": (
                sum(max(c["assignments"] - 1, 0) for c in cs) / len(cs) if cs else None
            ),
            "messages_mean": sum(c["messages"] for c in cs) / len(cs) if cs else None,
            "sla_resolution_attainment": (
                sum(v <= t for v, t in rated_res) / len(rated_res) if rated_res else None
            ),
            "sla_first_response_attainment": (
                sum(v <= t for v, t in rated_frt) / len(rated_frt) if rated_frt else None
            ),
            "csat_count": len(scores),
            "csat_mean": sum(scores) / len(scores) if scores else None,
        }
    return out


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    convs=st.lists(conversation, max_size=40),
    waits=st.lists(wait, max_size=60),
    group_by=st.sampled_from([(), ("channel",), ("priority", "agent_id")]),
    interval=st.sampled_from([None, "5m", "1h", "1d"]),
    start=st.none() | opened,
    end=st.none() | opened,
    channel=st.sampled_from([None, "chat", "email", "x"]),
)
def test_figures_from_columns_equal_the_plain_definitions(
    convs, waits, group_by, interval, start, end, channel
):
    codes = Codes()
    # Rows in one chunk, in any order: the cache's chunks hold them in no particular order.
    conversations = Table.empty(CONVERSATION_COLUMNS).replace(
        {0: conversation_columns(convs, codes)}
    )
    wait_table = Table.empty(WAIT_COLUMNS).replace({0: wait_columns(waits, codes)})
    code = codes.code("channel", channel) if channel else None
    selection = Selection(
        start_us=to_us(start) if start else None,
        end_us=to_us(end) if end else None,
        dimensions={} if channel is None else {"channel": -1 if code is None else code},
    )
    rows = compute(
        conversations.columns,
        wait_table.columns,
        selection=selection,
        targets=Targets.of(POLICIES, codes),
        codes=codes,
        group_by=group_by,
        interval=interval,
    )
    want = expected(
        convs, waits, group_by=group_by, interval=interval, start=start, end=end, channel=channel
    )
    got = {((r.bucket,) if interval else ()) + tuple(r.group[d] for d in group_by): r for r in rows}
    assert got.keys() == want.keys()
    assert list(got) == sorted(got, key=lambda k: [(v is None, v) for v in k])
    for k, row in got.items():
        w = want[k]
        assert row.conversations == w["conversations"]
        for name in ("resolution_s", "queue_wait_s", "first_response_s", "next_reply_s"):
            mine, theirs = row.measures[name], w[name]
            assert (mine.count, mine.min, mine.max) == (theirs.count, theirs.min, theirs.max)
            assert (mine.p50, mine.p90, mine.p95, mine.p99) == (
                theirs.p50,
                theirs.p90,
                theirs.p95,
                theirs.p99,
            )
            assert close(mine.mean, theirs.mean)
        assert close(row.reassignments_mean, w["reassignments_mean"])
        assert close(row.messages_mean, w["messages_mean"])
        for name in ("sla_resolution_attainment", "sla_first_response_attainment", "csat_mean"):
            assert close(row.extra[name], w[name]), name
        assert row.extra["csat_count"] == w["csat_count"]


def test_microseconds_survive_the_round_trip_exactly():
    moment = datetime(2026, 11, 2, 23, 59, 59, 999_999, tzinfo=UTC)
    assert from_us(to_us(moment)) == moment


def test_a_table_replaces_a_chunk_and_drops_an_emptied_one():
    codes = Codes()
    one = {"opened": T0, "seconds": 1.0, "first": True, "channel": "chat"}
    two = dict(one, seconds=2.0)
    table = Table.empty(WAIT_COLUMNS).replace(
        {7: wait_columns([two], codes), 3: wait_columns([one], codes)}
    )
    assert (list(table.columns["seconds"]), table.keys) == ([1.0, 2.0], (3, 7))
    table = table.replace({3: wait_columns([], codes), 5: wait_columns([one, one], codes)})
    assert (list(table.columns["seconds"]), table.keys) == ([1.0, 1.0, 2.0], (5, 7))
    assert list(table.between(6, 9)["seconds"]) == [2.0]
    assert list(table.between(0, 4)["seconds"]) == []
