from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.router.routing.rules import DEFAULT_RULES_PATH
from shared.events import Channel
from shared.settings import CommonSettings

# Added to the longest long-poll for the default presence timeout: a frontend's next poll,
# the flush of what was heard, and a sweep.
PRESENCE_MARGIN_S = 30.0


class RouterSettings(CommonSettings):
    """The router's settings (SWITCHBOARD_ prefix)."""

    host: str = "127.0.0.1"
    port: int = 8002
    consumer_group: str = "switchboard-router"
    rules_path: Path = DEFAULT_RULES_PATH
    # Seconds a request or a record waits for one of the db_pool_size connections (the router
    # opens no more) before it is answered 503 or retried.
    db_pool_timeout_s: float = 10.0
    # Inbound records of one partition applied in one transaction (a poll's records, at most
    # this many; nothing waits for a batch to fill). See docs/benchmarks.md for the measure.
    inbound_batch_max_records: int = Field(default=200, ge=1, le=500)
    # After a poll of inbound messages that did not fill a batch, the next waits until this
    # long after it began (the first message after a quiet spell is applied at once): under a
    # steady stream, fewer and larger intake transactions for at most this much latency.
    inbound_linger_ms: float = Field(default=0, ge=0, le=1000)
    # Where the outbox relay runs: in each router process, or in a process of its own
    # (``python -m services.router.relay``, woken by NOTIFY), which then has a core to itself
    # and leaves the router's to routing (a draining router spent a third of its CPU relaying).
    outbox_relay: Literal["in-process", "separate"] = "in-process"
    # What this process does: ``all`` (the agent API, the intake of inbound messages and
    # delivery statuses, and the queue sweep), ``api`` (the agent API only) or ``intake`` (the
    # consumers and the sweep; its HTTP port still answers health, readiness and metrics).
    # Split, the intake's transactions no longer wait behind API requests on one event loop:
    # in the bench's desk at 25 msg/s a one-message intake took 22 ms of wall time for a few
    # ms of work, and ingest-to-assigned was p50 53 ms, p99 185 ms (docs/throughput.md).
    role: Literal["all", "api", "intake"] = "all"
    # One replica's outbox relay publishes at a time, holding a lease renewed as it works; a
    # replica that dies hands over when its lease runs out (events wait that long).
    outbox_lease_s: float = Field(default=5.0, gt=0)
    # After a commit wakes the relay, it waits this long for more commits to publish with
    # (one round trip to PostgreSQL and one to the broker per round, whatever its size).
    outbox_linger_ms: float = Field(default=10.0, ge=0, le=1000)
    # Period of the queue sweep that assigns anything a racing wake-up left queued.
    queue_sweep_interval_s: float = 1.0
    # Longest long-poll an agent may ask for.
    max_poll_wait_s: float = 60.0
    # An agent online whose frontend has neither long-polled its assignments nor sent a
    # heartbeat for this long is set away (its unanswered conversations re-routed). Unset:
    # the longest long-poll and PRESENCE_MARGIN_S, so a frontend that polls again as each
    # poll answers is never set away; 0: presence does not follow the frontend.
    presence_timeout_s: float | None = Field(default=None, ge=0)
    # How often each router process writes which frontends it heard from (one statement).
    presence_flush_s: float = Field(default=5.0, gt=0)
    # Long-polls one agent may have waiting in one router process; a new one past the cap
    # answers the oldest at once (empty, with its cursor), so a frontend that lost its
    # connections is never locked out by waits nobody reads any more.
    max_waits_per_agent: int = Field(default=4, ge=1)
    # Messages a conversation carries in answers (the latest ones) when the request does not
    # say; earlier ones are paged from GET /v1/conversations/{id}/messages.
    conversation_messages: int = Field(default=50, ge=1, le=500)
    # Items per page of GET /v1/agents and GET /v1/queues when the request does not say.
    list_page_size: int = Field(default=100, ge=1, le=1000)
    # An Idempotency-Key's stored answer is replayed for at least this long.
    idempotency_ttl_s: float = 86_400
    # Offers: per channel, seconds an agent has to accept an assignment before it goes to the
    # next agent (a channel not listed: assignments need no acceptance; off by default).
    offer_timeout_s: dict[Channel, float] = {}  # noqa: RUF012 (pydantic copies defaults)
    # Offers missed in a row after which an agent is set away.
    max_missed_offers: int = 3
    # A customer writing again this long after a resolution reopens the conversation.
    reopen_window_s: float = 86_400
    # When an agent goes away or offline, re-route its answered conversations too.
    reroute_answered_on_leave: bool = False

    @property
    def presence_timeout(self) -> float:
        """Seconds unheard after which an online agent is set away (0: never)."""
        if self.presence_timeout_s is not None:
            return self.presence_timeout_s
        return self.max_poll_wait_s + PRESENCE_MARGIN_S
