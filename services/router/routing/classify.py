"""Classification: a message's priority, skill and language, and the rules that decided them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.router.routing.rules import RuleSet
from shared.events import Channel, CustomerTier, Priority, Skill

UNKNOWN_LANGUAGE = "und"


@dataclass(frozen=True)
class Classification:
    priority: Priority
    skill: Skill
    language: str
    rules_fired: tuple[str, ...]
    min_level: int = 1
    team: str | None = None


# Scripts that name their language unambiguously; checked in this order, since Japanese text
# mixes kana with Han characters and Korean may contain Han.
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")),
    ("ja", re.compile(r"[\u3040-\u309f\u30a0-\u30ff]")),
    ("zh", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
)
_LATIN = re.compile(r"[A-Za-z]")


def primary_language(tag: str) -> str:
    """``zh-Hant-TW`` → ``zh``: agents declare languages by their primary subtag."""
    return tag.split("-", 1)[0].lower()


def routing_language(text: str, hint: str | None) -> tuple[str, str]:
    """The language a message is routed by, and the rule that decided it: an unambiguous script
    first, then the language ingest detected (``services/ingest/language.py``), then English
    for Latin text, else unknown."""
    for language, script in _SCRIPTS:
        if script.search(text):
            return language, f"language.script-{language}"
    if hint:
        # Not "hint": ingest fills the message's language from the text it detects, and
        # takes the provider's or customer's hint only when the text cannot tell; which of
        # the two it was does not reach the router.
        return primary_language(hint), "language.ingest"
    if _LATIN.search(text):
        return "en", "language.latin-default"
    return UNKNOWN_LANGUAGE, "language.unknown"


def classify(
    text: str,
    *,
    rules: RuleSet,
    tier: CustomerTier = CustomerTier.STANDARD,
    language_hint: str | None = None,
    channel: Channel = Channel.CHAT,
    category: str | None = None,
) -> Classification:
    """Classify one customer message against ``rules``."""
    fired = [
        rule
        for rule in rules.rules
        if rule.fires(text, channel=channel, category=category, tier=tier)
    ]
    min_level, team = 1, None
    if fired:
        priority = min((r.priority for r in fired), key=lambda p: p.rank)
        decisive = next(r for r in fired if r.priority == priority)
        skill, min_level, team = decisive.skill, decisive.min_level, decisive.team
    else:
        priority, skill = rules.default.priority, rules.default.skill
    names = [r.id for r in fired] or ["default"]
    if tier in rules.vip_tiers:
        # Recorded for an urgent message too: that the customer is a VIP is part of the
        # decision even when there is no higher level to rank it to.
        priority = priority.raised() if priority != Priority.URGENT else priority
        names.append(f"tier.{tier.value}")
    language, language_rule = routing_language(text, language_hint)
    names.append(language_rule)
    return Classification(priority, skill, language, tuple(names), min_level, team)


def raise_on_followup(current: Classification, followup: Classification) -> Classification:
    """A waiting conversation's classification after another message: a message with words of
    urgency raises the priority; writing again by itself does not, and nothing lowers it."""
    if followup.priority.rank >= current.priority.rank:
        return current
    return Classification(
        followup.priority,
        followup.skill,
        current.language,
        current.rules_fired
        + tuple(r for r in followup.rules_fired if r not in current.rules_fired),
        # The level and team go with the skill: those of the rule that raised it.
        followup.min_level,
        followup.team,
    )
