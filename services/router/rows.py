"""How the router's values are read from and written to rows of ``router.*``: the column lists
the statements select, and the decoders into ``model.py``'s types. The statements themselves
are in ``store.py``, ``agent_store.py`` and ``intake_store.py``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.router.model import Claim, Conversation, StoredMessage
from services.router.routing.select import AgentView
from shared.events import AgentStatus, Attachment, Channel, CustomerTier, Priority, Skill

MESSAGE_COLUMNS = (
    "id, conversation_id, direction, author, text, channel_message_id, sent_at, created_at, "
    "attachments, edit_of"
)


def claim_of(row: Any) -> Claim:
    return Claim(True, row[0]) if row is not None else Claim(False)


CONVERSATION_COLUMNS = """
    id, conversation_key, channel, customer_id, customer_tier, state, priority, skill, language,
    rules_fired, agent_id, opened_at, queued_at, assigned_at, first_response_at, resolved_at,
    category, min_level, team, offered_at, accepted_at, escalated_at, excluded_agents,
    last_agent_id, reopened, group_name, overflow_stage, fallback_languages, overflow_team,
    stuck_since
"""


def conversation_of(row: Any) -> Conversation:
    m = row._mapping
    return Conversation(
        id=m["id"],
        conversation_key=m["conversation_key"],
        channel=Channel(m["channel"]),
        customer_id=m["customer_id"],
        customer_tier=CustomerTier(m["customer_tier"]),
        state=m["state"],
        priority=Priority(m["priority"]),
        skill=Skill(m["skill"]),
        language=m["language"],
        rules_fired=tuple(m["rules_fired"]),
        agent_id=m["agent_id"],
        opened_at=m["opened_at"],
        queued_at=m["queued_at"],
        assigned_at=m["assigned_at"],
        first_response_at=m["first_response_at"],
        resolved_at=m["resolved_at"],
        category=m["category"],
        min_level=m["min_level"],
        team=m["team"],
        offered_at=m["offered_at"],
        accepted_at=m["accepted_at"],
        escalated_at=m["escalated_at"],
        excluded_agents=tuple(m["excluded_agents"]),
        last_agent_id=m["last_agent_id"],
        reopened=m["reopened"],
        group_name=m["group_name"],
        overflow_stage=m["overflow_stage"],
        fallback_languages=tuple(m["fallback_languages"]),
        overflow_team=m["overflow_team"],
        stuck_since=m["stuck_since"],
    )


def agent_view_of(row: Any) -> AgentView:
    m = row._mapping
    return AgentView(
        id=m["id"],
        status=AgentStatus(m["status"]),
        skills=dict(m["skills"]),
        languages=frozenset(m["languages"]),
        capacity=dict(m["capacity"]),
        load=dict(m["load"]),
        last_assigned_at=m["last_assigned_at"],
        team=m["team"],
        max_load=m["max_load"],
    )


def attachments_json(attachments: Sequence[Attachment]) -> str | None:
    """A message's attachments as stored (a JSON array of their set fields); None (NULL)
    when it has none, which is most messages."""
    if not attachments:
        return None
    return json.dumps([a.model_dump(mode="json", exclude_none=True) for a in attachments])


def stored_message_of(row: Any) -> StoredMessage:
    m = row._mapping
    return StoredMessage(
        id=m["id"],
        conversation_id=m["conversation_id"],
        direction=m["direction"],
        author=m["author"],
        text=m["text"],
        sent_at=m["sent_at"],
        created_at=m["created_at"],
        delivery_status=m["delivery_status"],
        delivery_detail=m["delivery_detail"],
        attachments=tuple(map(Attachment.model_validate, m["attachments"] or ())),
        edit_of=m["edit_of"],
    )
