"""The topics file (deploy/topics.yaml), read into specs (pure)."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class TopicSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(ge=1, le=10_000)
    replication_factor: int | None = Field(default=None, ge=1, le=10)
    configs: dict[str, str] = {}


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replication_factor: int = Field(default=1, ge=1, le=10)
    configs: dict[str, str] = {}


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: _Defaults = _Defaults()
    topics: list[TopicSpec] = Field(min_length=1)


class TopicsFileError(ValueError):
    """A topics file that cannot be used; the message says what is wrong."""


def parse_topics(text: str, *, replication_factor: int | None = None) -> list[TopicSpec]:
    """Every topic with the defaults applied (``replication_factor`` overrides all, e.g. 1
    for a single-broker development cluster)."""
    try:
        raw: Any = yaml.safe_load(text)
        spec = _File.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise TopicsFileError(str(exc)) from exc
    names = [t.name for t in spec.topics]
    if len(names) != len(set(names)):
        raise TopicsFileError("a topic appears twice")
    return [
        t.model_copy(
            update={
                "replication_factor": replication_factor
                or t.replication_factor
                or spec.defaults.replication_factor,
                "configs": spec.defaults.configs | t.configs,
            }
        )
        for t in spec.topics
    ]
