"""Reading an agents file row by row, and naming what the router refused of a row."""

import httpx
import pytest

from cli.agents_file import AgentsFileError, Refusal, parse_agents
from cli.main import _put_agent

HEADER = "id,name,skills,languages,capacity,team,max_load\n"


def test_each_row_is_checked_on_its_own_and_names_its_line_and_column():
    rows = parse_agents(
        HEADER
        + "a1,A,security:3,en,chat:2,,\n"
        + "a2,B,securty:2,en,chat:one,,\n"
        + "a1,C,general:1,en,chat:1,,\n",
        name="x.csv",
    )
    assert [(r.where, r.valid) for r in rows] == [
        ("x.csv line 2", True),
        ("x.csv line 3", False),
        ("x.csv line 4", False),
    ]
    assert rows[0].body == {
        "name": "A",
        "skills": {"security": 3},
        "languages": ["en"],
        "capacity": {"chat": 2},
    }
    assert [r.column for r in rows[1].refusals] == ["capacity", "skills"]
    assert "(found 'securty')" in rows[1].refusals[1].reason
    assert rows[2].refusals == [Refusal("id", "'a1' is also on x.csv line 2")]


def test_a_quoted_cell_over_two_lines_counts_both():
    rows = parse_agents(HEADER + 'a1,"Ann\nSmith",general:9,en,chat:1,,\n', name="x.csv")
    assert rows[0].where == "x.csv line 3"
    assert rows[0].refusals[0].column == "skills"


def test_yaml_rows_are_named_by_position():
    rows = parse_agents(
        "agents:\n  - {id: y1, skills: {general: 2}, languages: [ko], capacity: {chat: 2}}\n"
        "  - {id: y2, skills: {general: 2}, languages: [ko], capacity: {fax: 2}, shoe: 9}\n",
        name="a.yaml",
    )
    assert rows[0].valid
    assert rows[1].where == "a.yaml agent 2"
    assert {r.column for r in rows[1].refusals} == {"shoe", "capacity"}


@pytest.mark.parametrize("text", ["name,skills\nA,general:1\n", "id,name,skils\na,A,general:1\n"])
def test_a_header_that_is_not_an_agents_header_refuses_the_file(text):
    with pytest.raises(AgentsFileError, match="line 1"):
        parse_agents(text, name="x.csv")


def test_what_the_router_refuses_names_the_column():
    def router(request: httpx.Request) -> httpx.Response:
        errors = [{"loc": ["body", "skills", "security"], "msg": "too high", "type": "x"}]
        return httpx.Response(422, json={"status": 422, "detail": "...", "errors": errors})

    with httpx.Client(transport=httpx.MockTransport(router), base_url="http://r") as client:
        assert _put_agent(client, "a1", {}) == [Refusal("skills", "security: too high")]


def test_any_other_refusal_says_what_the_router_answered():
    def router(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"status": 503, "detail": "database unavailable"})

    with httpx.Client(transport=httpx.MockTransport(router), base_url="http://r") as client:
        (refusal,) = _put_agent(client, "a1", {})
    assert refusal.reason == "the router answered 503: database unavailable"
