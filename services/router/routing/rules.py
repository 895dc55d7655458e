"""The classification rule set: a YAML file ops edit, validated on load, reloaded when it
changes."""

from __future__ import annotations

import logging
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.events import Channel, CustomerTier, Priority, Skill

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "rules.yaml"


class RulesError(ValueError):
    """A rules file that cannot be used; the message says which file and what is wrong."""


class Rule(BaseModel):
    """Fires when every condition it names holds: a pattern matches the text, the channel is
    listed, the form's category is listed, the customer's tier is listed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    priority: Priority
    skill: Skill
    patterns: list[str] = []
    channels: list[Channel] = []
    categories: list[str] = []
    tiers: list[CustomerTier] = []
    # The skill level an agent needs, and the team that takes it (None: any team).
    min_level: int = Field(default=1, ge=1, le=5)
    team: str | None = None

    @model_validator(mode="after")
    def _has_a_condition(self) -> Rule:
        if not (self.patterns or self.channels or self.categories or self.tiers):
            raise ValueError("no condition: give patterns, channels, categories or tiers")
        return self

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"pattern {p!r} is not a valid regular expression: {exc}") from exc
        return patterns

    @cached_property
    def regex(self) -> re.Pattern[str] | None:
        if not self.patterns:
            return None
        return re.compile("|".join(f"(?:{p})" for p in self.patterns), re.IGNORECASE)

    def fires(
        self, text: str, *, channel: Channel, category: str | None, tier: CustomerTier
    ) -> bool:
        return (
            (self.regex is None or self.regex.search(text) is not None)
            and (not self.channels or channel in self.channels)
            and (not self.categories or (category is not None and category in self.categories))
            and (not self.tiers or tier in self.tiers)
        )


class Default(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    priority: Priority = Priority.NORMAL
    skill: Skill = Skill.GENERAL


class Aging(BaseModel):
    """A waiting conversation ranks one priority level higher for every ``step_s`` it has
    waited (up to urgent), so a low-priority item cannot starve behind a stream of urgent ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    step_s: float = Field(default=600, gt=0)


class Escalation(BaseModel):
    """A waiting conversation past ``at`` of its first-response target is escalated: it may go
    to agents with a skill level down to ``widen_to_level`` and to any team."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    first_response_target_s: dict[Priority, float] = {
        Priority.URGENT: 60,
        Priority.HIGH: 300,
        Priority.NORMAL: 1800,
        Priority.LOW: 14400,
    }
    at: float = Field(default=0.8, gt=0, le=1)
    widen_to_level: int = Field(default=1, ge=1, le=5)
    widen_teams: bool = True

    def due(self, priority: Priority) -> float | None:
        """Seconds of waiting after which a conversation of ``priority`` is escalated."""
        target = self.first_response_target_s.get(priority)
        return None if target is None else target * self.at


class OverflowStage(BaseModel):
    """A conversation still queued ``after_s[priority]`` seconds after it was queued widens
    its need: to agents speaking one of ``languages`` too, to the fallback ``skill`` (at
    ``min_level``), and/or to the agents of ``team`` whatever their skills. Stages apply in
    file order, each on top of the ones before; a priority a stage does not list skips it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    after_s: dict[Priority, float] = Field(min_length=1)
    languages: list[str] = []
    skill: Skill | None = None
    min_level: int = Field(default=1, ge=1, le=5)
    team: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _widens(self) -> OverflowStage:
        if not (self.languages or self.skill or self.team):
            raise ValueError("widens nothing: give languages, skill or team")
        if "min_level" in self.model_fields_set and self.skill is None:
            raise ValueError("min_level without a skill: it is the fallback skill's level")
        return self

    @field_validator("after_s")
    @classmethod
    def _positive(cls, after_s: dict[Priority, float]) -> dict[Priority, float]:
        for priority, seconds in after_s.items():
            if not seconds > 0:
                raise ValueError(f"after_s.{priority.value} must be more than 0 (found {seconds})")
        return after_s

    @field_validator("languages")
    @classmethod
    def _primary_subtags(cls, languages: list[str]) -> list[str]:
        for language in languages:
            if not re.fullmatch(r"[a-z]{2,3}", language):
                raise ValueError(
                    f"language {language!r} is not a primary language subtag "
                    "(two or three lowercase letters, as agents declare them: 'en', 'fr')"
                )
        return languages

    @property
    def rule_name(self) -> str:
        """How the stage is recorded in a conversation's rules_fired."""
        return f"overflow.{self.id}"


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    default: Default = Default()
    vip_tiers: list[CustomerTier] = [CustomerTier.VIP]
    aging: Aging = Aging()
    escalation: Escalation = Escalation()
    rules: list[Rule]
    overflow: list[OverflowStage] = []

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} appears twice")
            seen.add(r.id)
        return rules

    @field_validator("overflow")
    @classmethod
    def _stages_in_order(cls, stages: list[OverflowStage]) -> list[OverflowStage]:
        seen: dict[str, OverflowStage] = {}
        for stage in stages:
            if stage.id in seen:
                raise ValueError(f"overflow stage id {stage.id!r} appears twice")
            # A later stage that came due earlier would widen before the one above it.
            for earlier in seen.values():
                for priority, seconds in stage.after_s.items():
                    before = earlier.after_s.get(priority)
                    if before is not None and seconds < before:
                        raise ValueError(
                            f"overflow stage {stage.id!r}: after_s.{priority.value} is "
                            f"{seconds}, less than {before} of the earlier stage {earlier.id!r}"
                        )
            seen[stage.id] = stage
        return stages


def parse_rules(text: str, *, source: str = "<rules>") -> RuleSet:
    """Parse and validate a rules document, or raise RulesError naming the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from exc
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(e, data) for e in exc.errors(include_url=False)]
        raise RulesError("\n  ".join([f"{source}: {len(problems)} problem(s)", *problems])) from exc


def _problem(error: Any, data: Any) -> str:
    """One validation error as ops read the file: the rule by its id (else its place in the
    list), then the field, what is wrong, and the value found if it is a plain one."""
    loc = list(error["loc"])
    where = ".".join(str(p) for p in loc)
    if len(loc) >= 2 and loc[0] in ("rules", "overflow") and isinstance(loc[1], int):
        rules = data.get(loc[0]) if isinstance(data, dict) else None
        rule = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        rule_id = rule.get("id") if isinstance(rule, dict) else None
        kind = "rule" if loc[0] == "rules" else "overflow stage"
        name = f"{kind} {rule_id!r}" if isinstance(rule_id, str) else f"{kind} #{loc[1] + 1}"
        where = ": ".join([name, *([".".join(str(p) for p in loc[2:])] if loc[2:] else [])])
    message = str(error["msg"]).removeprefix("Value error, ").strip()
    found = error.get("input")
    if isinstance(found, str | int | float | bool) and error["type"] != "missing":
        message += f" (found {found!r})"
    return f"{where}: {message}" if where else message


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc}") from exc
    return parse_rules(text, source=str(path))


class RulesSource:
    """The rules in force: reloaded when the file's modification time changes; a bad new file
    is refused (logged) and the previous rules stay."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = path.stat().st_mtime_ns
        self._rules = load_rules(path)

    def current(self) -> RuleSet:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return self._rules
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self._rules = load_rules(self.path)
                log.info("rules reloaded", extra={"path": str(self.path)})
            except RulesError as exc:
                log.error("rules file refused; previous rules stay", extra={"error": str(exc)})
        return self._rules
