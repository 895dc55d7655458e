from __future__ import annotations

from shared.settings import CommonSettings


class MetricsSettings(CommonSettings):
    """The metrics service's settings (SWITCHBOARD_ prefix)."""

    host: str = "127.0.0.1"
    port: int = 8003
    consumer_group: str = "switchboard-metrics"
    # How often live conversations are checked against their first-response targets.
    sla_sweep_interval_s: float = 1.0
