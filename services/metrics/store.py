"""Every query of the metrics schema. Nothing here commits: the caller's transaction does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.metrics.figures import ConversationFacts
from shared.events import (
    AgentReplied,
    AnyConversationEvent,
    Assigned,
    Classified,
    ConversationOpened,
    MessageReceived,
    Resolved,
)

# Each event folds into the conversation's row in a way that does not depend on arrival order:
# times keep the earliest value (LEAST ignores NULL), the classification keeps the latest.
_FOLD: dict[type, str] = {
    ConversationOpened: """UPDATE metrics.conversations SET opened_at = LEAST(opened_at, :at),
                             customer_tier = :tier WHERE conversation_id = :id""",
    MessageReceived: """UPDATE metrics.conversations
                        SET first_message_at = LEAST(first_message_at, :at),
                            customer_messages = customer_messages + 1
                        WHERE conversation_id = :id""",
    Classified: """UPDATE metrics.conversations
                   SET priority = :priority, skill = :skill, language = :language,
                       classified_at = :at
                   WHERE conversation_id = :id
                     AND (classified_at IS NULL OR classified_at <= :at)""",
    Assigned: """UPDATE metrics.conversations
                 SET first_assigned_at = LEAST(first_assigned_at, :at),
                     assignments = assignments + 1,
                     agent_id = CASE WHEN last_assigned_at IS NULL OR last_assigned_at <= :at
                                     THEN :agent ELSE agent_id END,
                     last_assigned_at = GREATEST(last_assigned_at, :at)
                 WHERE conversation_id = :id""",
    AgentReplied: """UPDATE metrics.conversations
                     SET first_response_at = LEAST(first_response_at, :at),
                         agent_replies = agent_replies + 1
                     WHERE conversation_id = :id""",
    Resolved: """UPDATE metrics.conversations SET resolved_at = LEAST(resolved_at, :at)
                 WHERE conversation_id = :id""",
}


@dataclass(frozen=True)
class Filters:
    start: datetime | None = None
    end: datetime | None = None
    channel: str | None = None
    priority: str | None = None
    skill: str | None = None
    language: str | None = None
    agent_id: str | None = None


class MetricsStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def apply(self, event: AnyConversationEvent) -> bool:
        """Fold one event into the facts; False if it was already applied."""
        first_time = await self.session.scalar(
            text("""INSERT INTO metrics.processed_events (event_id) VALUES (:id)
                    ON CONFLICT DO NOTHING RETURNING event_id"""),
            {"id": event.event_id},
        )
        if first_time is None:
            return False
        await self.session.execute(
            text("""INSERT INTO metrics.conversations (conversation_id, channel)
                    VALUES (:id, :channel) ON CONFLICT DO NOTHING"""),
            {"id": event.conversation_id, "channel": event.channel.value},
        )
        sql = _FOLD.get(type(event), "")
        if sql:
            params: dict[str, Any] = {"id": event.conversation_id, "at": event.occurred_at}
            if isinstance(event, ConversationOpened):
                params["tier"] = event.customer_tier.value
            elif isinstance(event, Classified):
                params |= {
                    "priority": event.priority.value,
                    "skill": event.skill.value,
                    "language": event.language,
                }
            elif isinstance(event, Assigned):
                params["agent"] = event.agent_id
            await self.session.execute(text(sql), params)
        return True

    async def facts(self, filters: Filters) -> list[ConversationFacts]:
        """Conversations opened in [start, end) that match every given filter."""
        rows = await self.session.execute(
            text("""SELECT conversation_id, channel, priority, skill, language, agent_id,
                           opened_at, first_message_at, first_assigned_at, first_response_at,
                           resolved_at
                    FROM metrics.conversations
                    WHERE (CAST(:start AS timestamptz) IS NULL OR opened_at >= :start)
                      AND (CAST(:end AS timestamptz) IS NULL OR opened_at < :end)
                      AND (CAST(:channel AS text) IS NULL OR channel = :channel)
                      AND (CAST(:priority AS text) IS NULL OR priority = :priority)
                      AND (CAST(:skill AS text) IS NULL OR skill = :skill)
                      AND (CAST(:language AS text) IS NULL OR language = :language)
                      AND (CAST(:agent AS text) IS NULL OR agent_id = :agent)"""),
            {
                "start": filters.start,
                "end": filters.end,
                "channel": filters.channel,
                "priority": filters.priority,
                "skill": filters.skill,
                "language": filters.language,
                "agent": filters.agent_id,
            },
        )
        return [ConversationFacts(**r._mapping) for r in rows]

    async def customer_messages_by_channel(self) -> dict[str, int]:
        rows = await self.session.execute(
            text("""SELECT channel, sum(customer_messages)::bigint AS n
                    FROM metrics.conversations GROUP BY channel""")
        )
        return {r.channel: int(r.n) for r in rows}
