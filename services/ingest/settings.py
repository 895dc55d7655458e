from __future__ import annotations

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    """Ingest's settings (SWITCHBOARD_ prefix)."""

    host: str = "127.0.0.1"
    port: int = 8001
    # How long a publish may wait for the broker's acknowledgement before answering 503.
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5
    # Channel secrets: a channel whose secret is unset answers 503 (not configured).
    telegram_secret_token: str | None = None  # the secret_token given to setWebhook
    meta_app_secret: str | None = None  # signs WhatsApp and Messenger deliveries
    meta_verify_token: str | None = None  # the token of Meta's GET handshake
    x_consumer_secret: str | None = None  # signs X deliveries and CRC answers
