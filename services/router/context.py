"""What every router use case is given: the store, the topics, the rules, the policy and now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from services.router.model import Conversation, Policy
from services.router.routing.rules import RuleSet
from services.router.store import RouterStore
from shared.settings import Topics


@dataclass(frozen=True)
class Context:
    store: RouterStore
    topics: Topics
    rules: RuleSet
    policy: Policy
    now: datetime
    # Events to write to the outbox (in one statement) just before the transaction commits:
    # topic, key, event, and the trace it belongs to (None: the transaction's own).
    outbox: list[tuple[str, str, BaseModel, str | None]] = field(default_factory=list)

    async def emit(self, conv: Conversation, event: BaseModel) -> None:
        """Publish a conversation event once the transaction commits."""
        self.publish(self.topics.conversation_events, str(conv.id), event)

    def publish(self, topic: str, key: str, event: BaseModel, trace: str | None = None) -> None:
        """Publish ``event`` on ``topic`` once the transaction commits (in ``trace``, a W3C
        carrier as JSON, when it belongs to another trace than the transaction's)."""
        self.outbox.append((topic, key, event, trace))
