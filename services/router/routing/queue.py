"""Queue order: the most urgent first, then the oldest, with aging; and what a freed agent pulls.

Aging: a conversation's effective priority rises one level for every ``step_s`` seconds it has
waited, up to urgent; among equal effective priorities the one waiting longest goes first. So a
low-priority conversation waits at most 3 × step_s before it competes with fresh urgent ones,
and after that it goes ahead of every urgent conversation younger than itself.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.router.routing.select import AgentView, Need, is_eligible
from shared.events import Priority


@dataclass(frozen=True)
class QueuedConversation:
    conversation_id: uuid.UUID
    priority: Priority
    queued_at: datetime
    need: Need


def effective_rank(item: QueuedConversation, *, now: datetime, step_s: float) -> int:
    """The priority rank after aging (0 is urgent)."""
    waited = max((now - item.queued_at).total_seconds(), 0.0)
    return max(item.priority.rank - math.floor(waited / step_s), 0)


def queue_key(
    item: QueuedConversation, *, now: datetime, step_s: float
) -> tuple[int, datetime, str]:
    """Effective priority, then age (oldest first), then id so the order is total."""
    return (effective_rank(item, now=now, step_s=step_s), item.queued_at, str(item.conversation_id))


def next_for_agent(
    queued: Iterable[QueuedConversation], agent: AgentView, *, now: datetime, step_s: float
) -> QueuedConversation | None:
    """The first conversation in queue order that ``agent`` can take, if any."""
    takeable = [q for q in queued if is_eligible(agent, q.need)]
    return min(takeable, key=lambda q: queue_key(q, now=now, step_s=step_s), default=None)
