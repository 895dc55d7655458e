"""Queue order: the most urgent first, then the oldest; and what a freed agent pulls."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.router.routing.select import AgentView, Need, is_eligible
from shared.events import Channel, Priority, Skill


@dataclass(frozen=True)
class QueuedConversation:
    conversation_id: uuid.UUID
    channel: Channel
    priority: Priority
    skill: Skill
    language: str
    queued_at: datetime

    @property
    def need(self) -> Need:
        return Need(self.channel, self.skill, self.language)


def queue_key(item: QueuedConversation) -> tuple[int, datetime, str]:
    """Priority rank, then age (oldest first), then id so the order is total."""
    return (item.priority.rank, item.queued_at, str(item.conversation_id))


def next_for_agent(
    queued: Iterable[QueuedConversation], agent: AgentView
) -> QueuedConversation | None:
    """The most urgent, oldest queued conversation ``agent`` can take, if any."""
    takeable = [q for q in queued if is_eligible(agent, q.need)]
    return min(takeable, key=queue_key, default=None)
