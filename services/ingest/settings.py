from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    """Ingest's settings (SWITCHBOARD_ prefix)."""

    host: str = "127.0.0.1"
    port: int = 8001
    # How long a publish may wait for the broker's acknowledgement before answering 503.
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5
    # Messages per second per customer of a channel (a flooding visitor is slowed, others not).
    rate_limit_per_customer_per_s: float = 2.0
    rate_limit_per_customer_burst: int = 20
    # POST /v1/messages/batch: messages per request, and its body limit (the other routes keep
    # max_body_bytes). 500 generic messages of a few KiB each fit in 4 MiB.
    batch_max_items: int = Field(default=500, ge=1, le=5000)
    batch_max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Channel secrets: a channel whose secret is unset answers 503 (not configured).
    telegram_secret_token: str | None = None  # the secret_token given to setWebhook
    meta_app_secret: str | None = None  # signs WhatsApp and Messenger deliveries
    meta_verify_token: str | None = None  # the token of Meta's GET handshake
    x_consumer_secret: str | None = None  # signs X deliveries and CRC answers

    # Outbound: where agents' replies go. Base URLs are settings so tests use local stand-ins.
    dispatcher_enabled: bool = True
    dispatcher_group: str = "switchboard-dispatcher"
    delivery_max_attempts: int = 5
    delivery_backoff_s: float = 0.5  # doubled after each failed attempt
    delivery_timeout_s: float = 10.0
    telegram_bot_token: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    meta_access_token: str | None = None
    graph_api_base: str = "https://graph.facebook.com/v21.0"
    x_access_token: str | None = None
    x_api_base: str = "https://api.twitter.com"
    chat_webhook_url: str | None = None
    form_webhook_url: str | None = None
    webhook_signing_secret: str | None = (
        None  # signs chat/form deliveries (X-Switchboard-Signature)
    )
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "support@localhost"
    smtp_timeout_s: float = 10.0
