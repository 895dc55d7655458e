"""Agents described in a CSV or YAML file, as the router's PUT /v1/agents/{id} bodies (pure).

CSV columns: ``id, name, skills, languages, capacity, team, max_load``, where ``skills`` and
``capacity`` are ``key:value`` pairs separated by ``;`` (``security:3;funds:2``) and
``languages`` is ``en;zh``. YAML: a list of mappings with the same keys (skills and capacity as
mappings, languages as a list).

Each row is read and checked on its own against the router's own request schema, so one bad
cell refuses its row, not the file; a refused row names its line (CSV) or position (YAML), the
column and the reason. Only a file that cannot be read as rows at all (no ``id`` column, an
unknown column, YAML that is not a list of agents) is refused whole."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from services.router.schemas import AgentId, AgentIn

COLUMNS = ("id", "name", "skills", "languages", "capacity", "team", "max_load")
_AGENT_ID: TypeAdapter[str] = TypeAdapter(AgentId)


class AgentsFileError(ValueError):
    """A file that does not describe agents; the message says where and what."""


@dataclass(frozen=True)
class Refusal:
    """Why a row's column was refused."""

    column: str
    reason: str


@dataclass
class AgentRow:
    """One agent of the file: where it is, its id and body, and what refuses it (if anything)."""

    where: str  # "agents.csv line 4", "agents.yaml agent 2"
    agent_id: str
    body: dict[str, Any]
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.refusals


def _pairs(text: str, column: str, refusals: list[Refusal]) -> dict[str, int] | None:
    out: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = item.partition(":")
        if not sep or not value.strip().isdigit():
            refusals.append(Refusal(column, f"{item!r} is not name:number"))
            return None
        out[key.strip()] = int(value)
    return out


def schema_refusals(errors: Sequence[Mapping[str, Any]]) -> list[Refusal]:
    """pydantic's errors of an agent body as refusals of its columns."""
    out = []
    for error in errors:
        column, *rest = [str(p) for p in error["loc"]] or ["-"]
        inside = ".".join(p for p in rest if p != "[key]")
        reason = f"{inside}: {error['msg']}" if inside else error["msg"]
        if "input" in error and not isinstance(error["input"], dict | list):
            reason += f" (found {error['input']!r})"
        out.append(Refusal(column, reason))
    return out


def _agent(raw: dict[Any, Any], where: str) -> AgentRow:
    refusals: list[Refusal] = []
    agent_id = str(raw.get("id") or "").strip()
    if not agent_id:
        refusals.append(Refusal("id", "an agent needs an id"))
    else:
        try:
            _AGENT_ID.validate_python(agent_id)
        except ValidationError as exc:
            refusals.append(Refusal("id", f"{exc.errors()[0]['msg']} (found {agent_id!r})"))
    if None in raw:  # csv.DictReader's key for the cells past the header's columns
        refusals.append(Refusal("-", f"more cells than the header's {len(raw) - 1} columns"))
    skills, capacity, languages = raw.get("skills"), raw.get("capacity"), raw.get("languages")
    if isinstance(skills, str):
        skills = _pairs(skills, "skills", refusals)
    if isinstance(capacity, str):
        capacity = _pairs(capacity, "capacity", refusals)
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(";") if x.strip()]
    body: dict[str, Any] = {
        "name": str(raw.get("name") or agent_id or "-"),
        "skills": skills or {},
        "languages": languages or [],
        "capacity": capacity or {},
    }
    if raw.get("team"):
        body["team"] = str(raw["team"])
    if raw.get("max_load") not in (None, ""):
        try:
            body["max_load"] = int(raw["max_load"])
        except (TypeError, ValueError):
            refusals.append(Refusal("max_load", f"{raw['max_load']!r} is not a number"))
    unknown = [k for k in raw if k is not None and k not in COLUMNS]
    refusals += [Refusal(str(k), "not a field of an agent") for k in unknown]
    try:
        AgentIn.model_validate(body)
    except ValidationError as exc:
        # A column refused above (a cell that is not name:number) is not refused twice.
        seen = {r.column for r in refusals}
        refusals += [r for r in schema_refusals(exc.errors()) if r.column not in seen]
    return AgentRow(where, agent_id, body, refusals)


def _refuse_repeats(rows: list[AgentRow]) -> None:
    first: dict[str, str] = {}
    for row in rows:
        if row.agent_id and row.agent_id in first:
            row.refusals.append(Refusal("id", f"{row.agent_id!r} is also on {first[row.agent_id]}"))
        first.setdefault(row.agent_id, row.where)


def _csv_rows(text: str, name: str) -> list[AgentRow]:
    reader = csv.DictReader(io.StringIO(text))
    header = [c.strip() for c in reader.fieldnames or []]
    if "id" not in header:
        raise AgentsFileError(f"{name} line 1: no 'id' column (columns: {','.join(COLUMNS)})")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise AgentsFileError(
            f"{name} line 1: unknown column {', '.join(map(repr, unknown))} "
            f"(columns: {','.join(COLUMNS)})"
        )
    reader.fieldnames = header
    rows = []
    for raw in reader:
        # reader.line_num: the row's last line (a quoted cell may span lines).
        rows.append(_agent(raw, f"{name} line {reader.line_num}"))
    return rows


def parse_agents(text: str, *, name: str) -> list[AgentRow]:
    """Every agent of a CSV (``*.csv``) or YAML document, each checked on its own."""
    if name.lower().endswith(".csv"):
        rows = _csv_rows(text, name)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AgentsFileError(f"{name}: not valid YAML: {exc}") from exc
        if isinstance(data, dict) and "agents" in data:
            data = data["agents"]
        if not isinstance(data, list):
            raise AgentsFileError(f"{name}: expected a list of agents")
        rows = [
            _agent(a, f"{name} agent {i + 1}")
            if isinstance(a, dict)
            else AgentRow(f"{name} agent {i + 1}", "", {}, [Refusal("-", "not a mapping")])
            for i, a in enumerate(data)
        ]
    _refuse_repeats(rows)
    return rows


def read_agents(path: Path) -> list[AgentRow]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentsFileError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from exc
    return parse_agents(text, name=path.name)
