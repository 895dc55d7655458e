"""Every query of the router's schema. Nothing here commits: the unit of work does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.routing.classify import UNKNOWN_LANGUAGE, Classification
from services.router.routing.queue import QueuedConversation
from services.router.routing.select import AgentView, Need
from shared.events import AgentStatus, Channel, CustomerTier, Priority, Skill

AGENT_CHANNEL = "switchboard_agent"  # NOTIFY channel: payload is the agent id


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    conversation_key: str
    channel: Channel
    customer_id: str
    customer_tier: CustomerTier
    state: str
    priority: Priority
    skill: Skill
    language: str
    rules_fired: tuple[str, ...]
    agent_id: str | None
    opened_at: datetime
    queued_at: datetime | None
    assigned_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None

    @property
    def classification(self) -> Classification:
        return Classification(self.priority, self.skill, self.language, self.rules_fired)


@dataclass(frozen=True)
class StoredMessage:
    id: uuid.UUID
    conversation_id: uuid.UUID
    direction: str
    author: str
    text: str
    sent_at: datetime | None
    created_at: datetime


_CONVERSATION_COLUMNS = """
    id, conversation_key, channel, customer_id, customer_tier, state, priority, skill, language,
    rules_fired, agent_id, opened_at, queued_at, assigned_at, first_response_at, resolved_at
"""


def _conversation(row: Any) -> Conversation:
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
    )


def _queued(row: Any) -> QueuedConversation:
    m = row._mapping
    return QueuedConversation(
        conversation_id=m["id"],
        channel=Channel(m["channel"]),
        priority=Priority(m["priority"]),
        skill=Skill(m["skill"]),
        language=m["language"],
        queued_at=m["queued_at"],
    )


_AGENT_VIEW = """
    SELECT a.id, a.status, a.skills, a.languages, a.last_assigned_at,
           coalesce(jsonb_object_agg(s.channel, s.capacity)
                    FILTER (WHERE s.channel IS NOT NULL), '{}') AS capacity,
           coalesce(jsonb_object_agg(s.channel, s.load)
                    FILTER (WHERE s.channel IS NOT NULL), '{}') AS load
    FROM router.agents a LEFT JOIN router.agent_slots s ON s.agent_id = a.id
"""


def _agent_view(row: Any) -> AgentView:
    m = row._mapping
    return AgentView(
        id=m["id"],
        status=AgentStatus(m["status"]),
        skills=dict(m["skills"]),
        languages=frozenset(m["languages"]),
        capacity=dict(m["capacity"]),
        load=dict(m["load"]),
        last_assigned_at=m["last_assigned_at"],
    )


class RouterStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _exec(self, sql: str, **params: Any) -> Any:
        return await self.session.execute(text(sql), params)

    # ------------------------------------------------------------ messages

    async def message_exists(self, message_id: uuid.UUID) -> bool:
        found = await self._exec("SELECT 1 FROM router.messages WHERE id = :id", id=message_id)
        return found.first() is not None

    async def add_message(
        self,
        *,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        direction: str,
        author: str,
        text: str,
        created_at: datetime,
        channel_message_id: str | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        await self._exec(
            """INSERT INTO router.messages
               (id, conversation_id, direction, author, text, channel_message_id, sent_at,
                created_at)
               VALUES (:id, :cid, :direction, :author, :text, :cmid, :sent_at, :created_at)""",
            id=message_id,
            cid=conversation_id,
            direction=direction,
            author=author,
            text=text,
            cmid=channel_message_id,
            sent_at=sent_at,
            created_at=created_at,
        )

    async def messages_of(
        self, conversation_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[StoredMessage]]:
        rows = await self._exec(
            """SELECT id, conversation_id, direction, author, text, sent_at, created_at
               FROM router.messages WHERE conversation_id = ANY(:ids) ORDER BY seq""",
            ids=list(conversation_ids),
        )
        out: dict[uuid.UUID, list[StoredMessage]] = {c: [] for c in conversation_ids}
        for r in rows:
            out[r.conversation_id].append(StoredMessage(**r._mapping))
        return out

    # ------------------------------------------------------------ conversations

    async def open_conversation_for_key(self, key: str) -> Conversation | None:
        row = await self._exec(
            f"""SELECT {_CONVERSATION_COLUMNS} FROM router.conversations
                WHERE conversation_key = :key AND state <> 'resolved' FOR UPDATE""",
            key=key,
        )
        found = row.first()
        return _conversation(found) if found else None

    async def conversation(
        self, cid: uuid.UUID, *, for_update: bool = False
    ) -> Conversation | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._exec(
            f"SELECT {_CONVERSATION_COLUMNS} FROM router.conversations WHERE id = :id{lock}",
            id=cid,
        )
        found = row.first()
        return _conversation(found) if found else None

    async def open_conversations_of(self, agent_id: str) -> list[Conversation]:
        rows = await self._exec(
            f"""SELECT {_CONVERSATION_COLUMNS} FROM router.conversations
                WHERE agent_id = :agent AND state = 'assigned' ORDER BY assigned_at""",
            agent=agent_id,
        )
        return [_conversation(r) for r in rows]

    async def create_conversation(
        self,
        *,
        cid: uuid.UUID,
        key: str,
        channel: Channel,
        customer_id: str,
        tier: CustomerTier,
        classification: Classification,
        opened_at: datetime,
    ) -> None:
        """A new conversation, queued until it is assigned (in the same transaction)."""
        await self._exec(
            """INSERT INTO router.conversations
               (id, conversation_key, channel, customer_id, customer_tier, state, priority,
                priority_rank, skill, language, rules_fired, opened_at, queued_at)
               VALUES (:id, :key, :channel, :customer, :tier, 'queued', :priority, :rank,
                       :skill, :language, :rules, :opened_at, :opened_at)""",
            id=cid,
            key=key,
            channel=channel.value,
            customer=customer_id,
            tier=tier.value,
            priority=classification.priority.value,
            rank=classification.priority.rank,
            skill=classification.skill.value,
            language=classification.language,
            rules=list(classification.rules_fired),
            opened_at=opened_at,
        )

    async def reclassify(self, cid: uuid.UUID, classification: Classification) -> None:
        await self._exec(
            """UPDATE router.conversations SET priority = :priority, priority_rank = :rank,
                      skill = :skill, language = :language, rules_fired = :rules
               WHERE id = :id""",
            id=cid,
            priority=classification.priority.value,
            rank=classification.priority.rank,
            skill=classification.skill.value,
            language=classification.language,
            rules=list(classification.rules_fired),
        )

    async def mark_assigned(self, cid: uuid.UUID, agent_id: str, now: datetime) -> bool:
        """Give a queued conversation to an agent; False if it is no longer queued."""
        result = await self._exec(
            """UPDATE router.conversations
               SET state = 'assigned', agent_id = :agent, assigned_at = :now
               WHERE id = :id AND state = 'queued' AND agent_id IS NULL""",
            id=cid,
            agent=agent_id,
            now=now,
        )
        return bool(result.rowcount == 1)

    async def mark_resolved(self, cid: uuid.UUID, now: datetime) -> None:
        await self._exec(
            """UPDATE router.conversations SET state = 'resolved', resolved_at = :now
               WHERE id = :id""",
            id=cid,
            now=now,
        )

    async def mark_first_response(self, cid: uuid.UUID, now: datetime) -> None:
        await self._exec(
            """UPDATE router.conversations SET first_response_at = :now
               WHERE id = :id AND first_response_at IS NULL""",
            id=cid,
            now=now,
        )

    async def queued_for(self, agent: AgentView, *, limit: int) -> list[QueuedConversation]:
        """The first ``limit`` queued conversations in queue order on the agent's channels with
        room, skills and languages, locked (others skip them) until the transaction ends."""
        channels = [c for c in agent.capacity if agent.room(Channel(c)) > 0]
        rows = await self._exec(
            """SELECT id, channel, priority, skill, language, queued_at
               FROM router.conversations
               WHERE state = 'queued' AND channel = ANY(:channels) AND skill = ANY(:skills)
                 AND (language = ANY(:languages) OR language = :unknown)
               ORDER BY priority_rank, queued_at, id
               LIMIT :limit FOR UPDATE SKIP LOCKED""",
            channels=channels,
            skills=list(agent.skills),
            languages=list(agent.languages),
            unknown=UNKNOWN_LANGUAGE,
            limit=limit,
        )
        return [_queued(r) for r in rows]

    async def queue_head(self, *, limit: int) -> list[QueuedConversation]:
        """The first ``limit`` queued conversations in queue order, locked (SKIP LOCKED)."""
        rows = await self._exec(
            """SELECT id, channel, priority, skill, language, queued_at
               FROM router.conversations WHERE state = 'queued'
               ORDER BY priority_rank, queued_at, id
               LIMIT :limit FOR UPDATE SKIP LOCKED""",
            limit=limit,
        )
        return [_queued(r) for r in rows]

    # ------------------------------------------------------------ agents

    async def upsert_agent(
        self,
        *,
        agent_id: str,
        name: str,
        skills: dict[str, int],
        languages: list[str],
        capacity: dict[str, int],
    ) -> None:
        await self._exec(
            """INSERT INTO router.agents (id, name, skills, languages)
               VALUES (:id, :name, CAST(:skills AS jsonb), :languages)
               ON CONFLICT (id) DO UPDATE SET name = excluded.name, skills = excluded.skills,
                   languages = excluded.languages, updated_at = now()""",
            id=agent_id,
            name=name,
            skills=json.dumps(skills),
            languages=languages,
        )
        # Channels left out keep their load (open conversations stay) but get no new ones.
        await self._exec(
            """INSERT INTO router.agent_slots (agent_id, channel, capacity)
               SELECT :id, c.key, c.value::int FROM jsonb_each_text(CAST(:cap AS jsonb)) c
               ON CONFLICT (agent_id, channel) DO UPDATE SET capacity = excluded.capacity""",
            id=agent_id,
            cap=json.dumps(capacity),
        )
        await self._exec(
            """UPDATE router.agent_slots SET capacity = 0
               WHERE agent_id = :id AND NOT (channel = ANY(:channels))""",
            id=agent_id,
            channels=list(capacity),
        )

    async def agent_exists(self, agent_id: str) -> bool:
        row = await self._exec("SELECT 1 FROM router.agents WHERE id = :id", id=agent_id)
        return row.first() is not None

    async def set_status(self, agent_id: str, status: AgentStatus) -> bool:
        result = await self._exec(
            "UPDATE router.agents SET status = :status, updated_at = now() WHERE id = :id",
            id=agent_id,
            status=status.value,
        )
        return bool(result.rowcount == 1)

    async def agent(self, agent_id: str) -> AgentView | None:
        row = await self._exec(_AGENT_VIEW + " WHERE a.id = :id GROUP BY a.id", id=agent_id)
        found = row.first()
        return _agent_view(found) if found else None

    async def agent_details(self, agent_id: str) -> dict[str, Any] | None:
        row = await self._exec(
            "SELECT id, name, inbox_version FROM router.agents WHERE id = :id", id=agent_id
        )
        found = row.first()
        return dict(found._mapping) if found else None

    async def candidates(self, need: Need) -> list[AgentView]:
        """Online agents with the skill, the language and room on the channel (unlocked: a
        slot is claimed with ``claim_slot``, which re-checks)."""
        rows = await self._exec(
            _AGENT_VIEW
            + """ WHERE a.status = 'online' AND (a.skills ->> :skill)::int >= :level
                    AND (:language = :unknown OR :language = ANY(a.languages))
                    AND EXISTS (SELECT 1 FROM router.agent_slots f WHERE f.agent_id = a.id
                                AND f.channel = :channel AND f.load < f.capacity)
                  GROUP BY a.id""",
            skill=need.skill.value,
            level=need.min_level,
            language=need.language,
            unknown=UNKNOWN_LANGUAGE,
            channel=need.channel.value,
        )
        return [_agent_view(r) for r in rows]

    async def claim_slot(self, agent_id: str, channel: Channel, now: datetime) -> bool:
        """Take one slot of an online agent on ``channel``, atomically; False if full or not
        online. Concurrent claims serialize on the slot row, and the WHERE is re-checked."""
        result = await self._exec(
            """UPDATE router.agent_slots s SET load = s.load + 1
               FROM router.agents a
               WHERE s.agent_id = :agent AND s.channel = :channel AND s.load < s.capacity
                 AND a.id = s.agent_id AND a.status = 'online'""",
            agent=agent_id,
            channel=channel.value,
        )
        if result.rowcount != 1:
            return False
        await self._exec(
            "UPDATE router.agents SET last_assigned_at = :now WHERE id = :agent",
            agent=agent_id,
            now=now,
        )
        return True

    async def release_slot(self, agent_id: str, channel: Channel) -> None:
        await self._exec(
            """UPDATE router.agent_slots SET load = load - 1
               WHERE agent_id = :agent AND channel = :channel AND load > 0""",
            agent=agent_id,
            channel=channel.value,
        )

    async def wake_agent(self, agent_id: str) -> None:
        """Something new for the agent: bump its inbox cursor and notify every replica (the
        notification is delivered when the transaction commits, and only then)."""
        await self._exec(
            "UPDATE router.agents SET inbox_version = inbox_version + 1 WHERE id = :agent",
            agent=agent_id,
        )
        await self._exec(f"SELECT pg_notify('{AGENT_CHANNEL}', :agent)", agent=agent_id)

    # ------------------------------------------------------------ outbox

    async def enqueue(self, topic: str, key: str, event: BaseModel) -> None:
        """Publish ``event`` once this transaction commits (the outbox relay sends it)."""
        await self._exec(
            "INSERT INTO router.outbox (topic, key, payload) VALUES (:topic, :key, :payload)",
            topic=topic,
            key=key,
            payload=event.model_dump_json(),
        )
