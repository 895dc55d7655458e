"""Agents described in a CSV or YAML file, as the router's PUT /v1/agents/{id} bodies (pure).

CSV columns: ``id, name, skills, languages, capacity, team, max_load``, where ``skills`` and
``capacity`` are ``key:value`` pairs separated by ``;`` (``security:3;funds:2``) and
``languages`` is ``en;zh``. YAML: a list of mappings with the same keys (skills and capacity as
mappings, languages as a list)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml


class AgentsFileError(ValueError):
    """A file that does not describe agents; the message says where and what."""


def _pairs(text: str, where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = item.partition(":")
        if not sep or not value.strip().isdigit():
            raise AgentsFileError(f"{where}: {item!r} is not name:number")
        out[key.strip()] = int(value)
    return out


def _agent(raw: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    agent_id = str(raw.get("id") or "").strip()
    if not agent_id:
        raise AgentsFileError(f"{where}: an agent needs an id")
    skills, capacity, languages = raw.get("skills"), raw.get("capacity"), raw.get("languages")
    if isinstance(skills, str):
        skills = _pairs(skills, f"{where} skills")
    if isinstance(capacity, str):
        capacity = _pairs(capacity, f"{where} capacity")
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(";") if x.strip()]
    body: dict[str, Any] = {
        "name": str(raw.get("name") or agent_id),
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
            raise AgentsFileError(
                f"{where}: max_load {raw['max_load']!r} is not a number"
            ) from None
    return agent_id, body


def parse_agents(text: str, *, name: str) -> list[tuple[str, dict[str, Any]]]:
    """(agent id, body) for every agent of a CSV (``*.csv``) or YAML document."""
    if name.lower().endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
        return [_agent(row, f"{name} line {i + 2}") for i, row in enumerate(rows)]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AgentsFileError(f"{name}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and "agents" in data:
        data = data["agents"]
    if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
        raise AgentsFileError(f"{name}: expected a list of agents")
    return [_agent(a, f"{name} agent {i + 1}") for i, a in enumerate(data)]


def read_agents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentsFileError(f"{path}: {exc.strerror}") from exc
    return parse_agents(text, name=path.name)
