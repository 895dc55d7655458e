"""Where the CLI finds the services (SWITCHBOARD_ prefix; flags override)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import Topics


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", env_nested_delimiter="__", extra="ignore"
    )

    router_url: str = "http://127.0.0.1:8002"
    metrics_url: str = "http://127.0.0.1:8003"
    ops_key: str | None = None
    kafka_bootstrap: str = "127.0.0.1:9092"
    topics: Topics = Topics()
    timeout_s: float = 30.0
