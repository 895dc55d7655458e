"""What an agent can reach of the queue (``routing.select.reach``), as the queue read applies
it (``queue_store.queued_for``: the stored level against the reach of its skill, the team
unless escalation opened it), takes exactly the conversations whose need (``need_for``) the
agent's skills and team meet."""

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.router.model import Conversation
from services.router.routing.rules import Escalation, RuleSet
from services.router.routing.select import SKILL_LEVELS, AgentView, need_for, reach
from shared.events import AgentStatus, Channel, CustomerTier, Priority, Skill

T0 = datetime(2026, 1, 1, tzinfo=UTC)
levels = st.sampled_from(list(SKILL_LEVELS))
teams = st.sampled_from([None, "l1", "l2"])


def conversation(skill: Skill, min_level: int, team: str | None, escalated: bool) -> Conversation:
    return Conversation(
        id=uuid.uuid4(),
        conversation_key="chat:x",
        channel=Channel.CHAT,
        customer_id="c",
        customer_tier=CustomerTier.STANDARD,
        state="queued",
        priority=Priority.NORMAL,
        skill=skill,
        language="en",
        rules_fired=(),
        agent_id=None,
        opened_at=T0,
        queued_at=T0,
        assigned_at=None,
        first_response_at=None,
        resolved_at=None,
        min_level=min_level,
        team=team,
        escalated_at=T0 if escalated else None,
    )


@given(
    skills=st.dictionaries(st.sampled_from([s.value for s in Skill]), levels, max_size=3),
    agent_team=teams,
    widen_to_level=levels,
    widen_teams=st.booleans(),
    skill=st.sampled_from(list(Skill)),
    min_level=levels,
    team=teams,
    escalated=st.booleans(),
)
def test_the_queue_read_takes_what_the_need_of_each_conversation_allows(
    skills, agent_team, widen_to_level, widen_teams, skill, min_level, team, escalated
):
    rules = RuleSet(
        rules=[], escalation=Escalation(widen_to_level=widen_to_level, widen_teams=widen_teams)
    )
    agent = AgentView(
        "a", AgentStatus.ONLINE, skills, frozenset({"en"}), {"chat": 1}, team=agent_team
    )
    need = need_for(conversation(skill, min_level, team, escalated), rules)
    by_need = agent.skills.get(need.skill, 0) >= need.min_level and need.team in (None, agent.team)

    r = reach(agent, rules.escalation)
    within = (r.escalated_levels if escalated else r.levels).get(skill.value, 0)
    by_reach = min_level <= within and (
        team is None or team == agent_team or (escalated and r.escalated_any_team)
    )
    assert by_reach == by_need
