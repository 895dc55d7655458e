"""Query parameters shared by the services' routes."""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator


def _split_commas(values: Any) -> Any:
    """``["channel,priority", "skill"]`` as ``["channel", "priority", "skill"]``."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return values
    return [part.strip() for v in values for part in str(v).split(",") if part.strip()]


CommaSeparated = BeforeValidator(_split_commas)
"""On a list query parameter: each value may also be a comma-separated list
(``?group_by=channel,priority`` as ``?group_by=channel&group_by=priority``)."""
