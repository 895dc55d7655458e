"""Repeated log lines of one kind are counted, not written, past a limit per window, so a flood
(asyncio logged "socket.accept() out of system resource" 500,000 times in a minute, issue 13)
cannot fill a disk; what was suppressed is summed up in one line."""

import asyncio
import errno
import io
import json
import logging
import socket

from shared.logs import RepeatLimit, configure_logging


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)

    @property
    def messages(self):
        return [r.getMessage() for r in self.records]


def limited(limit=3, window_s=60.0):
    handler = Lines()
    handler.addFilter(RepeatLimit(handler, limit=limit, window_s=window_s))
    return handler


def record(msg, *args, at, name="svc"):
    r = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    r.created = at
    return r


def test_past_the_limit_lines_of_one_kind_are_counted_and_summed_up_when_the_window_ends():
    handler = limited(limit=3, window_s=60)
    for i in range(1000):
        handler.handle(record("connection %d refused", i, at=100 + i * 0.01))
    assert handler.messages[:3] == [f"connection {i} refused" for i in range(3)]
    assert len(handler.messages) == 4
    assert handler.messages[3].startswith("further lines like this one are counted")

    handler.handle(record("connection %d refused", 1000, at=161))
    summary = handler.records[4]
    assert summary.getMessage() == "suppressed 997 similar lines in 60s: connection %d refused"
    assert summary.suppressed == 997 and summary.levelno == logging.ERROR
    assert handler.messages[5] == "connection 1000 refused"  # a new window lets it through


def test_kinds_are_counted_apart_by_logger_and_message_template():
    handler = limited(limit=2)
    for i in range(5):
        handler.handle(record("a %d", i, at=1 + i))
        handler.handle(record("b %d", i, at=1 + i))
        handler.handle(record("a %d", i, at=1 + i, name="other"))
    written = [m for m in handler.messages if not m.startswith("further")]
    assert sorted(written) == ["a 0", "a 0", "a 1", "a 1", "b 0", "b 1"]


def test_the_asyncio_accept_error_flood_is_capped_by_the_logging_every_service_installs(
    monkeypatch,
):
    limit = 5
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    previous_factory = logging.getLogRecordFactory()
    root = logging.getLogger()
    previous = root.handlers[:], root.level
    try:
        configure_logging("ingest", "INFO", repeat_limit=limit, repeat_window_s=60)
        loop = asyncio.new_event_loop()
        with socket.socket() as listening:
            for _ in range(10_000):  # what selector_events does on EMFILE, per pending accept
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                        "socket": listening,
                    }
                )
        loop.close()
    finally:
        root.handlers[:], level = previous
        root.setLevel(level)
        logging.setLogRecordFactory(previous_factory)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == limit + 1
    assert all(line["service"] == "ingest" for line in lines)
    assert lines[0]["msg"].startswith("socket.accept() out of system resource")
    assert lines[-1]["msg"].startswith("further lines like this one are counted")
