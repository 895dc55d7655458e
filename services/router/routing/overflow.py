"""Overflow (pure): a conversation nobody could take widens its need stage by stage as it
waits, so nobody waits forever for a language or a skill that nobody online has.

Each stage of the rules file's ``overflow`` list applies once the conversation has waited
(since it was queued; a conversation put back keeps its age) the stage's ``after_s`` for its
priority, on top of the stages before it: fallback languages are added to the conversation's
own, a fallback skill replaces its skill (and level), a team's agents may take it whatever
their skills. After its last stage a conversation still waiting is stuck: nothing widens it
any more, and ops see it (``/v1/queues``, metrics' ``switchboard_conversations_stuck``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from services.router.model import Conversation
from services.router.routing.rules import OverflowStage
from shared.events import Priority


@dataclass(frozen=True)
class Widening:
    """One stage applied: the conversation after it, and whether it was its last."""

    stage: OverflowStage
    conversation: Conversation
    final: bool
    waited_s: float


def next_stage(
    stages: Sequence[OverflowStage], priority: Priority, applied: int
) -> tuple[int, OverflowStage] | None:
    """The next stage for a conversation of ``priority`` that went through ``applied``."""
    for index in range(applied, len(stages)):
        if priority in stages[index].after_s:
            return index, stages[index]
    return None


def due_after(stages: Sequence[OverflowStage]) -> dict[str, float]:
    """``"<priority>:<stages applied>"``: the wait after which the next stage is due (the
    sweep's query joins it with each queued conversation)."""
    due: dict[str, float] = {}
    for priority in Priority:
        for applied in range(len(stages)):
            found = next_stage(stages, priority, applied)
            if found is not None:
                due[f"{priority.value}:{applied}"] = found[1].after_s[priority]
    return due


def widen(conv: Conversation, stage: OverflowStage, index: int, final: bool) -> Conversation:
    """The conversation with ``stage`` (at ``index`` in the list) applied."""
    languages = sorted({*conv.fallback_languages, *stage.languages} - {conv.language})
    return replace(
        conv,
        overflow_stage=index + 1,
        fallback_languages=tuple(languages),
        skill=stage.skill or conv.skill,
        min_level=stage.min_level if stage.skill else conv.min_level,
        overflow_team=stage.team or conv.overflow_team,
        rules_fired=conv.rules_fired
        + ((stage.rule_name,) if stage.rule_name not in conv.rules_fired else ()),
    )


def overflow(
    conv: Conversation, stages: Sequence[OverflowStage], *, now: datetime
) -> list[Widening]:
    """Every stage due for a queued conversation at ``now``, in order (none when it has not
    waited long enough for the next one); the last one that is its final stage marks it
    stuck from ``now``."""
    if conv.state != "queued" or conv.queued_at is None:
        return []
    waited = (now - conv.queued_at).total_seconds()
    done: list[Widening] = []
    while (found := next_stage(stages, conv.priority, conv.overflow_stage)) is not None:
        index, stage = found
        if waited < stage.after_s[conv.priority]:
            break
        final = next_stage(stages, conv.priority, index + 1) is None
        conv = widen(conv, stage, index, final)
        if final:
            conv = replace(conv, stuck_since=now)
        done.append(Widening(stage, conv, final, waited))
    return done
