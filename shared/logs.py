"""Structured (one JSON object per line) logging for every service."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry import trace

if TYPE_CHECKING:
    from shared.settings import CommonSettings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class RepeatLimit(logging.Filter):
    """Let ``limit`` records of one kind through per window of ``window_s`` seconds, count the
    rest, and write one line saying how many were suppressed when the window ends.

    A kind is a logger and the first line of its message template (asyncio puts the details of
    an exception-handler message on later lines). Windows are fixed, timed by the records' own
    clock; a window's summary is written with the first record after it ends, so a flood that
    stops is summed up by the next line logged. The first suppressed record of a kind says so.
    """

    def __init__(self, handler: logging.Handler, *, limit: int, window_s: float) -> None:
        super().__init__()
        self.handler = handler
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._seen: Counter[tuple[str, str]] = Counter()
        self._suppressed: dict[tuple[str, str], logging.LogRecord] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeat_summary", False):
            return True
        key = (record.name, str(record.msg).partition("\n")[0])
        with self._lock:
            ended = self._roll(record.created)
            self._seen[key] += 1
            count = self._seen[key]
            first_suppressed = count == self.limit + 1
            if count > self.limit:
                self._suppressed.setdefault(key, record)
        for summary in ended:
            self.handler.handle(summary)
        if first_suppressed:
            self.handler.handle(
                self._notice(
                    record,
                    "further lines like this one are counted, "
                    f"not written, for up to {self.window_s:g}s",
                    None,
                )
            )
        return count <= self.limit

    def _roll(self, now: float) -> list[logging.LogRecord]:
        """Start a new window if ``now`` is past the current one; the ended window's
        summaries."""
        if self._window_start is None:
            self._window_start = now
        if now - self._window_start < self.window_s:
            return []
        summaries = [
            self._notice(
                example,
                f"suppressed {self._seen[key] - self.limit} similar lines in {self.window_s:g}s",
                self._seen[key] - self.limit,
            )
            for key, example in self._suppressed.items()
        ]
        self._window_start = now
        self._seen.clear()
        self._suppressed.clear()
        return summaries

    @staticmethod
    def _notice(example: logging.LogRecord, text: str, suppressed: int | None) -> logging.LogRecord:
        record = logging.LogRecord(
            example.name,
            example.levelno,
            example.pathname,
            example.lineno,
            "%s: %s",
            (text, str(example.msg).partition("\n")[0]),
            None,
        )
        record.repeat_summary = True
        if suppressed is not None:
            record.suppressed = suppressed
        service = getattr(example, "service", None)
        if service is not None:
            record.service = service
        return record


def configure_logging(
    service: str, level: str = "INFO", *, repeat_limit: int = 100, repeat_window_s: float = 60.0
) -> None:
    """Send every log record to stderr as JSON, tagged with the service name; past
    ``repeat_limit`` records of one kind per ``repeat_window_s``, only a count."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatLimit(handler, limit=repeat_limit, window_s=repeat_window_s))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    old_factory = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = old_factory(*args, **kwargs)
        record.service = service
        return record

    logging.setLogRecordFactory(factory)


def configure_service_logging(service: str, settings: CommonSettings) -> None:
    """``configure_logging`` with a process's settings (level and repeat limit)."""
    configure_logging(
        service,
        settings.log_level,
        repeat_limit=settings.log_repeat_limit,
        repeat_window_s=settings.log_repeat_window_s,
    )
