from __future__ import annotations

from pathlib import Path

from services.router.routing.rules import DEFAULT_RULES_PATH
from shared.events import Channel
from shared.settings import CommonSettings


class RouterSettings(CommonSettings):
    """The router's settings (SWITCHBOARD_ prefix)."""

    host: str = "127.0.0.1"
    port: int = 8002
    consumer_group: str = "switchboard-router"
    rules_path: Path = DEFAULT_RULES_PATH
    # Seconds a request or a record waits for one of the db_pool_size connections (the router
    # opens no more) before it is answered 503 or retried.
    db_pool_timeout_s: float = 10.0
    # Period of the queue sweep that assigns anything a racing wake-up left queued.
    queue_sweep_interval_s: float = 1.0
    # Longest long-poll an agent may ask for, and how often a waiting poll re-checks.
    max_poll_wait_s: float = 60.0
    poll_recheck_s: float = 1.0
    # Offers: per channel, seconds an agent has to accept an assignment before it goes to the
    # next agent (a channel not listed: assignments need no acceptance; off by default).
    offer_timeout_s: dict[Channel, float] = {}  # noqa: RUF012 (pydantic copies defaults)
    # Offers missed in a row after which an agent is set away.
    max_missed_offers: int = 3
    # A customer writing again this long after a resolution reopens the conversation.
    reopen_window_s: float = 86_400
    # When an agent goes away or offline, re-route its answered conversations too.
    reroute_answered_on_leave: bool = False
