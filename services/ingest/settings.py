from __future__ import annotations

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    """Ingest's settings (SWITCHBOARD_ prefix)."""

    host: str = "127.0.0.1"
    port: int = 8001
    # How long a publish may wait for the broker's acknowledgement before answering 503.
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5
