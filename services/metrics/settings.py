from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class MetricsSettings(CommonSettings):
    """The metrics service's settings (SWITCHBOARD_ prefix)."""

    host: str = "127.0.0.1"
    port: int = 8003
    consumer_group: str = "switchboard-metrics"
    # How often live conversations are checked against their first-response targets.
    sla_sweep_interval_s: float = 1.0
    # How often what the facts' writes added to the scrape's counters (a row per statement
    # and label set) is summed into its totals: a scrape sums the totals and what is left.
    # Days of conversations (by opening) whose report columns are held in memory: memory and
    # the first read of a new process grow with the window, not with all history. Reports
    # reaching before it read those days from PostgreSQL for themselves (slower, as exact,
    # and their answer says so). 0: hold all history.
    report_window_days: float = Field(default=7.0, ge=0, le=3660)
    scrape_compact_s: float = Field(default=5.0, gt=0, le=3600)
    # How long a fetch of events may wait at the broker for data: folds may lag this much
    # (reports and live views are read in seconds), and an idle metrics process polls the
    # broker 10 times a second rather than 40.
    events_fetch_max_wait_ms: int = Field(default=100, ge=1, le=5000)
    # Events folded per transaction: at most one poll's records (nothing waits for a batch to
    # fill). Polls of 2,000 cost about a quarter less CPU an event than polls of 500 (most of
    # a batch's cost is per conversation, and events of one conversation meet in a larger
    # batch). 0 folds one event per transaction (the reference the batches are held to, and
    # the bench's comparison).
    fold_batch_max_records: int = Field(default=2000, ge=0, le=5000)
    # After a poll that did not fill a batch, the next waits until this long after it began:
    # a steady trickle of events is folded in fewer, larger transactions (most of a fold's
    # cost is per transaction at low rates), and nothing is read sooner than this anyway. A
    # backlog is folded at full speed (a full poll is followed at once).
    fold_linger_ms: float = Field(default=200, ge=0, le=5000)
