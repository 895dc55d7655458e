"""The batched intake's statements (services/router/intake.py): a poll's inbound messages read
and locked in a few statements, then the plan's rows written set-based. Every one goes
through an index on conversations and messages, whatever the history
(tests/integration/test_query_plans.py). The rest of the router's SQL is in store.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from services.router.model import Conversation
from services.router.routing.batch import Plan
from services.router.routing.select import AgentView, Need
from services.router.rows import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    agent_view_of,
    attachments_json,
    conversation_of,
)
from services.router.statements import (
    AGENT_VIEW,
    CANDIDATE_ORDER,
    NOTIFY_WOKEN,
    NeedColumns,
    eligible_sql,
)
from services.router.store import RouterStore

# Eligibility for each of a batch's needs (columns of ``n``; a new message's need has no
# exclusions and no overflow).
_BATCH_NEED_ELIGIBLE = eligible_sql(NeedColumns("n.skill", "n.level", "n.language", "n.team"))


class IntakeStore(RouterStore):
    """The router's store, with the statements of a batch of inbound messages."""

    async def applied(self, message_ids: Sequence[uuid.UUID]) -> frozenset[uuid.UUID]:
        """Which of these messages were applied before."""
        rows = await self._exec(
            "SELECT id FROM router.messages WHERE id = ANY(:ids)", ids=list(message_ids)
        )
        return frozenset(r.id for r in rows)

    async def lock_threads(
        self, keys: Sequence[str], resolved_since: datetime
    ) -> dict[str, Conversation]:
        """Each thread's open conversation, else its latest one resolved at or after
        ``resolved_since`` (as ``arrival``), locked in id order."""
        rows = await self._exec(
            f"""SELECT {CONVERSATION_COLUMNS} FROM router.conversations
                WHERE id IN (
                    SELECT t.id FROM unnest(CAST(:keys AS text[])) AS k(key)
                    CROSS JOIN LATERAL (
                        (SELECT id FROM router.conversations
                         WHERE conversation_key = k.key AND state <> 'resolved')
                        UNION ALL
                        (SELECT id FROM router.conversations
                         WHERE conversation_key = k.key AND state = 'resolved'
                           AND resolved_at >= :since
                         ORDER BY resolved_at DESC LIMIT 1)
                        LIMIT 1) AS t)
                ORDER BY id FOR UPDATE""",
            keys=list(keys),
            since=resolved_since,
        )
        found: dict[str, Conversation] = {}
        for conv in map(conversation_of, rows):
            held = found.get(conv.conversation_key)
            # Resolved meanwhile, or a conversation opened meanwhile: the open one wins.
            if held is None or (held.state == "resolved" and conv.state != "resolved"):
                found[conv.conversation_key] = conv
        return found

    async def lock_agents_for(
        self, needs: Collection[Need], also: Collection[str], *, best: int
    ) -> dict[str, AgentView]:
        """For each need, the ``best`` online agents with room that could be given it (in
        ``routing.select``'s order, as ``candidates``), and the agents ``also`` named, locked
        in id order, with their slots (every writer of slots holds the agent's row first, but a
        release that is its transaction's last lock).

        ``best`` at least the number of assignments the batch can make suffices: an agent
        given a conversation only ranks lower after it (its occupancy rises), the others keep
        their order, so each choice is among the first ones of its need."""
        locked = await self._exec(
            f"""SELECT a.id FROM router.agents a
               WHERE a.id = ANY(:also) OR a.id IN (
                   SELECT c.id
                   FROM unnest(CAST(:channels AS text[]), CAST(:skills AS text[]),
                               CAST(:levels AS int[]), CAST(:languages AS text[]),
                               CAST(:teams AS text[])) AS n(channel, skill, level, language, team)
                   CROSS JOIN LATERAL (
                       SELECT c.id FROM router.agents c
                       JOIN router.agent_slots f ON f.agent_id = c.id AND f.channel = n.channel
                       WHERE {_BATCH_NEED_ELIGIBLE}
                       ORDER BY {CANDIDATE_ORDER}
                       LIMIT :best) AS c)
               ORDER BY a.id FOR UPDATE OF a""",
            best=best,
            also=list(also),
            channels=[n.channel.value for n in needs],
            skills=[n.skill.value for n in needs],
            levels=[n.min_level for n in needs],
            languages=[n.language for n in needs],
            teams=[n.team for n in needs],
        )
        ids = [r.id for r in locked]
        if not ids:
            return {}
        rows = await self._exec(AGENT_VIEW + " WHERE a.id = ANY(:ids) GROUP BY a.id", ids=ids)
        return {view.id: view for view in map(agent_view_of, rows)}

    async def write_intake(self, plan: Plan) -> None:
        """The plan's rows in one statement, so one round trip (as six statements, each waited
        its turn for a core under load): new conversations in their final state, the
        changed ones, the messages in order, the slots taken, and the agents' load, last
        assignment and inbox cursor, each agent's row updated once (two updates of one row in
        one statement would keep only one); the agents woken are notified on commit."""
        m = plan.messages
        per_agent: dict[str, list[int]] = {}  # agent id: [slots taken, times woken]
        for (agent_id, _), n in plan.claims.items():
            per_agent.setdefault(agent_id, [0, 0])[0] += n
        for agent_id, n in plan.woken.items():
            per_agent.setdefault(agent_id, [0, 0])[1] += n
        await self._exec(
            _WRITE_INTAKE,
            created=_conversation_rows(plan.created.values()),
            changed=_conversation_rows(plan.changed.values()),
            ids=[x.message_id for x in m],
            cids=[x.conversation_id for x in m],
            authors=[x.author for x in m],
            texts=[x.text for x in m],
            cmids=[x.channel_message_id for x in m],
            sent=[x.sent_at for x in m],
            created_at=[x.created_at for x in m],
            attachments=[attachments_json(x.attachments) for x in m],
            edits=[x.edit_of for x in m],
            slot_agents=[a for a, _ in plan.claims],
            slot_channels=[c.value for _, c in plan.claims],
            slot_ns=list(plan.claims.values()),
            agents=list(per_agent),
            taken=[n for n, _ in per_agent.values()],
            woken=[n for _, n in per_agent.values()],
            now=plan.now,
        )


_WRITTEN_COLUMNS = (
    "id, conversation_key, channel, customer_id, customer_tier, state, priority, "
    "priority_rank, skill, language, rules_fired, agent_id, opened_at, queued_at, assigned_at, "
    "first_response_at, resolved_at, category, min_level, team, offered_at, accepted_at, "
    "escalated_at, excluded_agents, last_agent_id, reopened, group_name, overflow_stage, "
    "fallback_languages, overflow_team, stuck_since"
)


_CHANGED_SET = ", ".join(f"{c} = r.{c}" for c in _WRITTEN_COLUMNS.split(", ") if c != "id")
# Data-modifying CTEs all run, each on the statement's snapshot; the foreign keys of the
# messages on conversations created in a sibling are checked at the statement's end.
_WRITE_INTAKE = f"""
    WITH created AS (
        INSERT INTO router.conversations ({_WRITTEN_COLUMNS})
        SELECT {_WRITTEN_COLUMNS} FROM jsonb_populate_recordset(
            NULL::router.conversations, CAST(:created AS jsonb))),
    changed AS (
        UPDATE router.conversations AS c SET {_CHANGED_SET}
        FROM jsonb_populate_recordset(NULL::router.conversations, CAST(:changed AS jsonb)) AS r
        WHERE c.id = r.id),
    messages AS (
        INSERT INTO router.messages ({MESSAGE_COLUMNS})
        SELECT id, cid, 'inbound', author, text, cmid, sent_at, created_at,
               CAST(attachments AS jsonb), edit_of
        FROM unnest(CAST(:ids AS uuid[]), CAST(:cids AS uuid[]), CAST(:authors AS text[]),
                    CAST(:texts AS text[]), CAST(:cmids AS text[]),
                    CAST(:sent AS timestamptz[]), CAST(:created_at AS timestamptz[]),
                    CAST(:attachments AS text[]), CAST(:edits AS uuid[]))
             WITH ORDINALITY AS r(id, cid, author, text, cmid, sent_at, created_at,
                                  attachments, edit_of, n)
        ORDER BY n),
    slots AS (
        UPDATE router.agent_slots AS s SET load = load + t.n
        FROM unnest(CAST(:slot_agents AS text[]), CAST(:slot_channels AS text[]),
                    CAST(:slot_ns AS int[])) AS t(id, channel, n)
        WHERE s.agent_id = t.id AND s.channel = t.channel),
    agents AS (
        UPDATE router.agents AS a
        SET last_assigned_at = CASE WHEN t.taken > 0 THEN CAST(:now AS timestamptz)
                                    ELSE a.last_assigned_at END,
            inbox_version = inbox_version + t.woken
        FROM unnest(CAST(:agents AS text[]), CAST(:taken AS int[]), CAST(:woken AS int[]))
             AS t(id, taken, woken)
        WHERE a.id = t.id
        RETURNING a.id, t.woken)
    SELECT {NOTIFY_WOKEN} FROM agents WHERE woken > 0"""


def _conversation_rows(convs: Iterable[Conversation]) -> str:
    """Conversations as the JSON rows ``jsonb_populate_recordset`` reads."""

    def at(t: datetime | None) -> str | None:
        return t.isoformat() if t is not None else None

    return json.dumps(
        [
            {
                "id": str(c.id),
                "conversation_key": c.conversation_key,
                "channel": c.channel.value,
                "customer_id": c.customer_id,
                "customer_tier": c.customer_tier.value,
                "state": c.state,
                "priority": c.priority.value,
                "priority_rank": c.priority.rank,
                "skill": c.skill.value,
                "language": c.language,
                "rules_fired": list(c.rules_fired),
                "agent_id": c.agent_id,
                "opened_at": at(c.opened_at),
                "queued_at": at(c.queued_at),
                "assigned_at": at(c.assigned_at),
                "first_response_at": at(c.first_response_at),
                "resolved_at": at(c.resolved_at),
                "category": c.category,
                "min_level": c.min_level,
                "team": c.team,
                "offered_at": at(c.offered_at),
                "accepted_at": at(c.accepted_at),
                "escalated_at": at(c.escalated_at),
                "excluded_agents": list(c.excluded_agents),
                "last_agent_id": c.last_agent_id,
                "reopened": c.reopened,
                "group_name": c.group_name,
                "overflow_stage": c.overflow_stage,
                "fallback_languages": list(c.fallback_languages),
                "overflow_team": c.overflow_team,
                "stuck_since": at(c.stuck_since),
            }
            for c in convs
        ]
    )
