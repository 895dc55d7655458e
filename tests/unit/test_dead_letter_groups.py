"""Which dead letters ``switchboard dead-letters replay --consumer-group`` picks."""

import pytest

from cli.replay import group_matches


@pytest.mark.parametrize(
    ("wanted", "group", "picked"),
    [
        ("router", "switchboard-router", True),  # the README's short name
        ("switchboard-router", "switchboard-router", True),
        ("dispatcher", "switchboard-dispatcher", True),
        ("ingest", "ingest", True),  # ingest's adapters write their own name
        ("router", "switchboard-metrics", False),
        ("metrics", "switchboard-router", False),
        ("router", "switchboard-router-canary", False),
        ("switchboard-router", "router", False),
    ],
)
def test_a_consumer_group_is_picked_by_its_full_or_its_service_name(wanted, group, picked):
    assert group_matches(wanted, group) is picked
