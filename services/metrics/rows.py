"""How metrics' rows hold what is not a plain column: jsonb (as asyncpg hands it over), the
folds the timeline keeps as JSON, and a wait's own columns. The statements are in
``store.py`` and its sibling ``*_store.py`` modules."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from services.metrics.facts import Fold, Wait

# The fold's fields that are times.
FOLD_TIMES = [f.name for f in dataclasses.fields(Fold) if "datetime" in str(f.type)]


def wait_values(wait: Wait, seq: int) -> dict[str, Any]:
    """A wait's own columns of its ``metrics.waits`` row (the conversation's copy aside)."""
    return {
        "seq": seq,
        "kind": wait.kind.value,
        "episode": wait.episode,
        "started_at": wait.started_at,
        "replied_at": wait.replied_at,
        "seconds": wait.seconds,
        "business_seconds": wait.business_seconds,
        "agent_id": wait.agent_id,
    }


def json_ready(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


def fold_of(state: Any) -> Fold | None:
    """A fold kept as JSON (None when the entry has none yet)."""
    if state is None:
        return None
    values = json_param(state)
    for name in FOLD_TIMES:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    return Fold(**values)


def json_param(value: Any) -> Any:
    """asyncpg hands jsonb over as text."""
    return json.loads(value) if isinstance(value, str) else value
