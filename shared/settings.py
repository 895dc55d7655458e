"""Settings every service shares, read from the environment with the SWITCHBOARD_ prefix."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiKeyEntry(BaseModel):
    """One API key as configured: only its SHA-256 digest is ever held, never the key."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[str]


class Topics(BaseModel):
    """Kafka topic names, derived from one namespace so tests can run on fresh topics."""

    namespace: str = "switchboard"

    @property
    def inbound(self) -> str:
        return f"{self.namespace}.inbound.v1"

    @property
    def conversation_events(self) -> str:
        return f"{self.namespace}.conversation-events.v1"

    @property
    def delivery_events(self) -> str:
        """Written by ingest's reply dispatcher only: reply_delivered, reply_failed."""
        return f"{self.namespace}.delivery-events.v1"

    @property
    def sla_events(self) -> str:
        """Written by metrics only, through its outbox: sla_at_risk, sla_breached."""
        return f"{self.namespace}.sla-events.v1"

    @property
    def agent_events(self) -> str:
        return f"{self.namespace}.agent-events.v1"

    @property
    def outbound(self) -> str:
        return f"{self.namespace}.outbound.v1"

    @property
    def dead_letter(self) -> str:
        return f"{self.namespace}.dead-letter.v1"

    def all(self) -> list[str]:
        return [
            self.inbound,
            self.conversation_events,
            self.delivery_events,
            self.sla_events,
            self.agent_events,
            self.outbound,
            self.dead_letter,
        ]


class CommonSettings(BaseSettings):
    """Settings shared by the three services; each service subclasses this with its own."""

    model_config = SettingsConfigDict(
        env_prefix="SWITCHBOARD_", env_nested_delimiter="__", extra="ignore"
    )

    environment: str = "development"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Tansu does not wake a waiting fetch when data arrives, so this bounds the latency a hop
    # adds; each consumer fetches this often while idle. 5 ms cost the whole desk idle 0.6 of
    # a core (the broker 0.24) on a 2-core machine, 25 ms 0.25 of a core, and at 60 msg/s
    # offered the desk went from 45 msg/s achieved (HTTP p50 281 ms) to 60 (p50 35 ms).
    # Apache Kafka answers a waiting fetch as data arrives: there, a longer wait costs nothing.
    kafka_fetch_max_wait_ms: int = 25
    kafka_request_timeout_ms: int = 5000
    # A consumer is dropped from its group after this long without a heartbeat. Tansu also
    # holds a group join for about half of it, so tests lower it to start consumers faster.
    kafka_session_timeout_ms: int = 10_000
    kafka_partitions: int = 6
    topics: Topics = Topics()
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/switchboard"
    db_pool_size: int = 10
    api_keys: list[ApiKeyEntry] = []
    # Keys managed at run time (auth.api_keys, through the router's /v1/keys): each process
    # checks the table this often and takes up a change at once; 0 accepts configured keys
    # only (and opens no database connection for keys).
    keys_refresh_s: float = Field(default=2.0, ge=0)
    # A stored key's last use is written at most this often (per process, per key).
    keys_last_used_s: float = Field(default=60.0, gt=0)
    # Single sign-on for agent frontends: OIDC JWT bearer tokens, signed by a key of the
    # identity provider's JWKS, issued by oidc_issuer for oidc_audience. Unset: keys only.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    # The claim naming the agent (its value is the agent id; dotted for a nested claim), and
    # the claim listing roles (a list, or a space-separated string) of which oidc_ops_role
    # grants ops and oidc_desk_role desk (an agent frontend's backend acting for any agent).
    oidc_agent_claim: str = "sub"
    oidc_role_claim: str = "roles"
    oidc_ops_role: str = "switchboard-ops"
    oidc_desk_role: str = "switchboard-desk"
    oidc_algorithms: list[str] = ["RS256", "PS256", "ES256", "EdDSA"]
    oidc_leeway_s: float = Field(default=30.0, ge=0)
    # The JWKS is read again after this long, and at once for a token signed by a key it
    # does not hold (a rotation), but not more often than oidc_jwks_min_refresh_s.
    oidc_jwks_cache_s: float = Field(default=300.0, gt=0)
    oidc_jwks_min_refresh_s: float = Field(default=5.0, ge=0)
    max_body_bytes: int = 256 * 1024
    # Requests per second per API key (each process keeps its own buckets), with bursts.
    rate_limit_per_key_per_s: float = 1000.0
    rate_limit_per_key_burst: int = 2000
    log_level: str = "INFO"
    # Lines of one kind (logger and message template) written per window; the rest are
    # counted and summed up in one line, so a flood (e.g. asyncio's accept errors) cannot fill
    # a disk.
    log_repeat_limit: int = Field(default=100, ge=1)
    log_repeat_window_s: float = Field(default=60.0, gt=0)
    # Slow and idle clients (shared/serving.py). A request's headers must arrive within
    # header_timeout_s of its first byte (of the connection, for a new one), its body within
    # body_timeout_s of its headers; a connection idle between requests is closed after
    # keepalive_timeout_s. A long-poll's wait comes after its request is read: none of these
    # cut it.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    keepalive_timeout_s: float = Field(default=5.0, gt=0)
    # Open connections per process (further capped by the file-descriptor limit). Past it
    # the connection idle longest is closed; if none is idle, the new one is answered 503.
    max_connections: int = Field(default=2048, ge=1)
    # /docs, /redoc and /openapi.json without a key. Unset: public in development only;
    # deploy/ sets it false explicitly.
    docs_public: bool | None = None
    # OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); unset: no traces.
    otlp_endpoint: str | None = None

    @model_validator(mode="after")
    def _oidc_whole(self) -> CommonSettings:
        given = [self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url]
        if any(given) and not all(given):
            raise ValueError("single sign-on needs oidc_issuer, oidc_audience and oidc_jwks_url")
        if (
            self.oidc_jwks_url
            and not self.oidc_jwks_url.startswith("https://")
            and self.environment != "development"
        ):
            raise ValueError("oidc_jwks_url must be https:// outside development")
        return self

    @property
    def sso_enabled(self) -> bool:
        """Whether OIDC tokens are accepted."""
        return bool(self.oidc_jwks_url)

    @property
    def docs_are_public(self) -> bool:
        """Whether the API docs answer without a key."""
        if self.docs_public is not None:
            return self.docs_public
        return self.environment == "development"
