from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.metrics.calendars import BusinessCalendar
from services.metrics.facts import (
    Entry,
    Fold,
    Moment,
    Wait,
    WaitKind,
    conclude,
    derive,
    refold,
    timed,
    timeline_order,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


def at(seconds):
    return T0 + timedelta(seconds=seconds)


# A conversation answered, handed to a second agent, resolved, reopened and resolved again.
STORY = [
    Entry(Moment.OPENED, at(0)),
    Entry(Moment.MESSAGE, at(0)),
    Entry(Moment.ASSIGNED, at(5), "alice"),
    Entry(Moment.MESSAGE, at(30)),  # still waiting: the wait started at 0
    Entry(Moment.REPLIED, at(60), "alice"),
    Entry(Moment.MESSAGE, at(100)),
    Entry(Moment.ASSIGNED, at(130), "bob"),
    Entry(Moment.REPLIED, at(160), "bob"),
    Entry(Moment.RESOLVED, at(200), "bob"),
    Entry(Moment.REOPENED, at(300)),
    Entry(Moment.MESSAGE, at(300)),
    Entry(Moment.REPLIED, at(400), "bob"),
    Entry(Moment.RESOLVED, at(500), "bob"),
]


def test_first_response_again_after_a_reopen_next_replies_and_reassignments():
    facts = derive(STORY)
    assert [(w.kind, w.episode, w.seconds) for w in facts.waits] == [
        (WaitKind.FIRST, 0, 60),
        (WaitKind.NEXT, 0, 60),
        (WaitKind.FIRST, 1, 100),
    ]
    assert facts.resolution_s == 500 and facts.queue_wait_s == 5
    assert (facts.assignments, facts.reassignments, facts.reopens) == (2, 1, 1)
    assert (facts.customer_messages, facts.agent_replies, facts.agent_id) == (4, 3, "bob")
    assert facts.first_response_at == at(60) and facts.resolved_at == at(500)


def test_a_reopened_conversation_is_not_resolved_and_has_no_resolution_time():
    facts = derive(STORY[:11])
    assert facts.resolved_at is None and facts.resolution_s is None
    assert len(facts.waits) == 2  # the reopening message is still waiting


def test_a_message_left_unanswered_at_resolution_counts_no_reply_time():
    facts = derive(
        [
            Entry(Moment.OPENED, at(0)),
            Entry(Moment.MESSAGE, at(0)),
            Entry(Moment.RESOLVED, at(50), "alice"),
        ]
    )
    assert facts.waits == () and facts.resolution_s == 50


def test_business_times_follow_the_calendar():
    nine_to_five = BusinessCalendar.parse("uk", "UTC", {"mon": [["09:00", "17:00"]]})
    facts = derive(
        [
            Entry(Moment.OPENED, at(7 * 3600)),  # 16:00 Monday
            Entry(Moment.MESSAGE, at(7 * 3600)),
            Entry(Moment.REPLIED, at(9 * 3600), "alice"),  # 18:00: one business hour later
        ],
        nine_to_five,
    )
    assert facts.waits == (
        Wait(WaitKind.FIRST, 0, at(7 * 3600), at(9 * 3600), 7200.0, 3600.0, "alice"),
    )


def test_a_skewed_clock_counts_zero_not_a_negative_time():
    facts = derive(
        [
            Entry(Moment.OPENED, at(10)),
            Entry(Moment.MESSAGE, at(10)),
            Entry(Moment.ASSIGNED, at(9), "alice"),
        ]
    )
    assert facts.queue_wait_s == 0


@given(st.permutations(STORY))
def test_the_order_events_arrive_in_does_not_change_the_facts(shuffled):
    assert derive(shuffled) == derive(STORY)


NINE_TO_FIVE = BusinessCalendar.parse("uk", "UTC", {"mon": [["09:00", "17:00"]]})


def fold_as_they_arrive(arrivals, calendar=None):
    """What the metrics store does with each event: fold the entries at or after its time
    from the fold kept on the entry before them, and answer the waits from there again."""
    kept = []  # (order, entry, fold after it), in timeline order
    waits = {}  # seq -> answer
    for n, entry in enumerate(arrivals):
        earlier = [row for row in kept if row[1].at < entry.at]
        before = earlier[-1][2] if earlier else Fold()
        later = sorted(
            [(order, e) for order, e, _ in kept if e.at >= entry.at]
            + [((*timeline_order(entry), n), entry)],
            key=lambda row: row[0],
        )
        folds, answers = refold(before, [e for _, e in later])
        kept = earlier + [(order, e, f) for (order, e), f in zip(later, folds, strict=True)]
        waits = {seq: a for seq, a in waits.items() if seq < before.waits}
        waits |= {before.waits + i: a for i, a in enumerate(answers)}
    last = kept[-1][2] if kept else Fold()
    assert sorted(waits) == list(range(last.waits))
    return conclude(last, [timed(waits[seq], calendar) for seq in sorted(waits)], calendar)


ENTRIES = st.builds(
    Entry,
    st.sampled_from(Moment),
    st.integers(0, 40).map(lambda minutes: at(minutes * 600)),  # ties, and closed hours
    st.sampled_from([None, "alice", "bob"]),
    st.sampled_from([None, "l1", "l2"]),
)


@given(st.lists(ENTRIES, max_size=40), st.randoms(use_true_random=False))
def test_folding_each_event_from_the_entry_before_it_equals_folding_the_whole_timeline(
    timeline, random
):
    arrivals = list(timeline)
    random.shuffle(arrivals)
    assert fold_as_they_arrive(arrivals) == derive(timeline)
    assert fold_as_they_arrive(arrivals, NINE_TO_FIVE) == derive(timeline, NINE_TO_FIVE)


def test_late_events_fold_again_the_entries_after_them():
    late_message = STORY[:5] + STORY[6:] + STORY[5:6]  # the message at 100 comes last
    assert fold_as_they_arrive(late_message) == derive(STORY)
    assert fold_as_they_arrive(list(reversed(STORY))) == derive(STORY)
    assert fold_as_they_arrive(STORY) == derive(STORY)


def _live(entries):
    folds, _ = refold(Fold(), sorted(entries, key=timeline_order))
    facts = conclude(folds[-1])
    return facts.held_by, facts.queued_since


def test_the_fold_follows_the_router_queue_offers_transfers_and_reopening():
    # One router transaction stamps its events with one time: at(10) takes the offer back from
    # alice, queues the conversation again at its first age, and offers it to bob.
    story = [
        Entry(Moment.OPENED, at(0)),
        Entry(Moment.MESSAGE, at(0)),
        Entry(Moment.QUEUED, at(1)),
        Entry(Moment.OFFERED, at(5), "alice"),
        Entry(Moment.OFFER_TIMED_OUT, at(10), "alice"),
        Entry(Moment.QUEUED, at(10)),
        Entry(Moment.OFFERED, at(10), "bob"),
    ]
    assert _live(story[:3]) == (None, at(0))  # queued at the customer's message
    assert _live(story[:5]) == (None, None)  # between agents, within one transaction
    assert _live(story) == ("bob", None)
    story += [Entry(Moment.ASSIGNED, at(12), "bob"), Entry(Moment.TRANSFERRED, at(20))]
    assert _live([*story, Entry(Moment.ASSIGNED, at(20), "carol")]) == ("carol", None)
    story += [Entry(Moment.QUEUED, at(20))]  # to a skill's queue: its first age kept
    assert _live(story) == (None, at(0))
    story += [Entry(Moment.ASSIGNED, at(30), "carol"), Entry(Moment.RESOLVED, at(40), "carol")]
    assert _live(story) == (None, None)
    # The customer writes at 50; the router reopens it at 51, which starts its queue age.
    story += [Entry(Moment.REOPENED, at(50)), Entry(Moment.QUEUED, at(51))]
    assert _live(story) == (None, at(51))


def test_a_reopening_message_that_the_router_applies_after_a_resolution_is_queued_then():
    # Written at 50, before the agent resolved at 55; the router reopened it at 60.
    assert _live(
        [
            Entry(Moment.OPENED, at(0)),
            Entry(Moment.ASSIGNED, at(1), "alice"),
            Entry(Moment.REOPENED, at(50)),
            Entry(Moment.RESOLVED, at(55), "alice"),
            Entry(Moment.ASSIGNED, at(60), "alice"),
        ]
    ) == ("alice", None)
    assert _live(
        [
            Entry(Moment.OPENED, at(0)),
            Entry(Moment.ASSIGNED, at(1), "alice"),
            Entry(Moment.REOPENED, at(50)),
            Entry(Moment.RESOLVED, at(55), "alice"),
            Entry(Moment.QUEUED, at(60)),
        ]
    ) == (None, at(60))
