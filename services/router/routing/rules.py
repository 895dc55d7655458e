"""The classification rule set: a YAML file ops edit, validated on load, reloaded when it
changes."""

from __future__ import annotations

import logging
import re
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.events import CustomerTier, Priority, Skill

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "rules.yaml"


class RulesError(ValueError):
    """A rules file that cannot be used; the message says which file and what is wrong."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    priority: Priority
    skill: Skill
    patterns: list[str] = Field(min_length=1)

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
    def regex(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{p})" for p in self.patterns), re.IGNORECASE)


class Default(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    priority: Priority = Priority.NORMAL
    skill: Skill = Skill.GENERAL


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    default: Default = Default()
    vip_tiers: list[CustomerTier] = [CustomerTier.VIP]
    rules: list[Rule]

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} appears twice")
            seen.add(r.id)
        return rules


def parse_rules(text: str, *, source: str = "<rules>") -> RuleSet:
    """Parse and validate a rules document, or raise RulesError naming the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from exc
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RulesError(f"{source}: {exc}") from exc


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
