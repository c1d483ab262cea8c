"""The platform process's settings, read from the environment and validated before use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = ("change", "secret", "placeholder", "example", "password", "default", "xxxx")


_MQTT_URL_KEYS = ("mqtt_url", "plantwire_mqtt_url")


class PlatformSettings(BaseSettings):
    """Settings of ``plantwire platform`` (ingest and API); environment names in brackets."""

    model_config = SettingsConfigDict(
        env_prefix="PLANTWIRE_", extra="ignore", frozen=True, env_parse_none_str="none"
    )

    database_url: str = Field(
        default="postgresql:///plantwire",
        validation_alias=AliasChoices("DATABASE_URL", "PLANTWIRE_DATABASE_URL"),
        description="PostgreSQL connection URL [DATABASE_URL]",
    )
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        validation_alias=AliasChoices("MQTT_URL", "PLANTWIRE_MQTT_URL"),
        description="MQTT broker URL [MQTT_URL]",
    )
    mqtt_url_file: str | None = Field(
        default=None,
        description="read the MQTT URL (with its login) from this file instead, as "
        "'plantwire platform broker init --url-file' writes it",
    )
    host_id: str = Field(
        default="plantwire", pattern=r"^[A-Za-z0-9_.-]+$", description="Sparkplug host id"
    )
    broker_dir: str | None = Field(
        default=None,
        description="the broker directory ('plantwire platform broker init DIR') from which "
        "the API issues and revokes gateways' broker logins; unset: only the command line does",
    )
    gateway_mqtt_url: str = Field(
        default="mqtts://127.0.0.1:8883",
        description="the broker URL the gateways reach, written into the configs the API makes",
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)

    # -- API bounds --------------------------------------------------------------------------
    api_statement_timeout_s: float = Field(
        default=20.0, gt=0, le=3600, description="longest database statement of an API request"
    )
    api_deadline_s: float = Field(
        default=60.0, gt=0, le=3600, description="longest computation of one API request"
    )
    api_compute_slots: int = Field(
        default=2, ge=1, le=64, description="indicator computations one API process runs at once"
    )
    api_compute_queue: int = Field(
        default=16, ge=0, le=10_000, description="computations waiting for a slot before 503"
    )
    api_max_window_days: int = Field(
        default=7305, ge=1, description="longest indicator window (default 20 years)"
    )
    api_max_buckets: int = Field(default=400, ge=1, le=10_000, description="buckets per request")
    api_start_workers: bool = Field(
        default=True,
        description="start the indicator worker processes with the API (else at the first "
        "computation that needs one, which then waits a few seconds for them)",
    )
    api_pool_size: int = Field(
        default=8, ge=2, le=100, description="database connections of API requests"
    )

    # -- ingest ------------------------------------------------------------------------------
    client_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="MQTT client id of this ingest worker (default '<host_id>-ingest'); stable "
        "across restarts so the broker keeps its session; distinct per worker",
    )
    shared_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="MQTT v5 shared-subscription group: workers with the same group split "
        "the traffic (each subscribes to $share/<group>/ + the registered nodes' topics)",
    )
    spec_strict: bool = Field(
        default=False,
        description="receive at QoS 0 as Sparkplug prescribes for data (no redelivery after "
        "a crash) instead of QoS 1 with acknowledgement after commit",
    )
    commit_confirmations: bool = Field(
        default=True,
        description="after each commit, tell every edge node which of its data messages are "
        "stored (plantwire extension, plantwire/v1/committed/...): plantwire gateways delete "
        "from their buffers only then",
    )
    batch_size: int = Field(default=20_000, ge=1, description="samples per database write")
    batch_age_ms: int = Field(default=200, ge=1, description="max wait before a write")
    queue_size: int = Field(default=20_000, ge=100, description="messages buffered from MQTT")
    inflight_window: int = Field(
        default=1000,
        ge=2,
        description="unacknowledged messages the broker lets through to this worker "
        "(mosquitto max_inflight_messages, EMQX max_inflight): a batch takes at most half",
    )
    reorder_wait_ms: int | None = Field(
        default=None,
        ge=0,
        description="the reorder timeout: how long a seq hole may wait for a late message "
        "before the node is asked for a rebirth, and, with shared_group, how long data may "
        "wait for a birth taken by another worker; default 2000 with shared_group, 0 (a gap "
        "is asked about at once) for a worker alone",
    )
    rebirth_holdoff_s: float = Field(
        default=10.0, gt=0, description="at most one rebirth request per node in this time"
    )
    unregistered_nodes: Literal["refuse", "admit"] = Field(
        default="refuse",
        description="messages from an edge node no site of the registry names, or about a "
        "device its node does not own: 'refuse' (dead letter within a quota, nothing stored) "
        "or 'admit' (development: stored as series of no equipment, never in an indicator)",
    )
    registry_refresh_s: float = Field(
        default=2.0, gt=0, le=3600, description="how often the ingest rereads which nodes exist"
    )
    refused_dead_letters_per_s: float = Field(
        default=5.0,
        gt=0,
        description="dead letters of refused senders written per second, all senders together "
        "(beyond it they are counted on /metrics and in the log)",
    )
    refused_dead_letters_burst: int = Field(default=200, ge=1, description="burst of the above")
    dead_letter_payload_bytes: int = Field(
        default=1024, ge=0, le=1_048_576, description="bytes of a refused payload kept"
    )
    dead_letter_retention_days: int | None = Field(
        default=30, ge=1, description="drop dead letters older than this (none: keep all)"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve Prometheus /metrics on this port"
    )
    metrics_host: str = "127.0.0.1"

    # -- storage -----------------------------------------------------------------------------
    retention_days: int | None = Field(
        default=None, ge=1, description="drop samples older than this (default: keep all)"
    )
    pack_after_days: int | None = Field(
        default=7,
        ge=1,
        description="pack numeric samples of days this old into one row per series and day "
        "(about 7 instead of ~93 bytes a sample; the platform reads both, SQL users read "
        "sample_num_all); PLANTWIRE_PACK_AFTER_DAYS=none keeps every sample a row. "
        "With TimescaleDB, its compression policy does this instead",
    )
    compress_after_days: int | None = Field(
        default=2,
        ge=1,
        description="TimescaleDB only: compress sample chunks (one day each) this old, "
        "segmented by series (about 24x smaller); none: no compression policy",
    )
    partition_ahead_days: int = Field(
        default=3, ge=1, le=60, description="daily sample partitions created ahead of time"
    )
    maintenance_interval_s: float = Field(
        default=300.0, gt=0, description="partition/retention/roll-up upkeep period"
    )
    rollup_interval_s: float = Field(
        default=5.0, gt=0, description="how often closed minutes are rolled up"
    )
    usage_rollup_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="how often the ingest workers store the closed hours of the hourly usage "
        "roll-up (so that no indicator request has to fill it)",
    )

    # -- partner data interface ---------------------------------------------------------------
    insecure_dev_secrets: bool = Field(
        default=False, description="accept placeholder token secrets (development and demo only)"
    )
    token_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key signing partner access tokens (>= 32 characters); unset: a random "
        "key per process, so tokens do not survive a restart or span several API processes",
    )
    token_ttl_s: int = Field(default=300, ge=10, le=300, description="access token lifetime")
    session_ttl_s: int = Field(
        default=8 * 3600,
        ge=60,
        le=30 * 86400,
        description="how long a console session lasts unused: its refresh token (an httpOnly "
        "cookie, rotated at every refresh) expires this long after it was issued",
    )
    token_attempts_per_s: float = Field(
        default=5.0,
        gt=0,
        description="token requests per second whose secret is checked, all clients together "
        "(keep it below what the server can hash: scrypt costs tens of milliseconds)",
    )
    token_attempts_burst: int = Field(default=20, ge=1, description="burst of the above")
    token_ip_attempts_per_s: float = Field(
        default=0.5, gt=0, description="token requests per second per address"
    )
    token_ip_attempts_burst: int = Field(default=10, ge=1, description="burst per address")
    token_id_attempts_per_s: float = Field(
        default=0.5, gt=0, description="token requests per second per client id"
    )
    token_id_attempts_burst: int = Field(default=10, ge=1, description="burst per client id")
    token_free_failures: int = Field(
        default=3,
        ge=1,
        description="failed token requests per client id or address before backoff (1 s, "
        "doubling with every further failure or attempt while held back)",
    )
    token_backoff_max_s: float = Field(
        default=900.0, gt=0, le=86_400, description="longest backoff of a client id or address"
    )
    audit_key: SecretStr | None = Field(
        default=None,
        description="secret keying the audit log's hash chain (HMAC) and signing its exported "
        "heads (>= 32 characters; keep it out of the database). Unset: the partner interface "
        "answers 503, since it can audit nothing",
    )
    partner_rate_per_s: float = Field(
        default=50.0, gt=0, description="partner API requests per second per client"
    )
    partner_burst: int = Field(default=100, ge=1, description="partner API burst per client")
    partner_cache_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="longest reuse of a computed indicator value by the partner API (0: "
        "never); values are keyed by the supplier's data versions, so any new data is seen at "
        "once; access is decided afresh on every call regardless",
    )
    partner_max_body_bytes: int = Field(
        default=65_536, ge=1_024, description="largest partner API request body"
    )
    partner_pool_size: int = Field(
        default=10, ge=2, le=100, description="database connections of partner data reads"
    )
    partner_statement_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="longest partner database statement"
    )
    partner_min_bucket_samples: int = Field(
        default=3,
        ge=1,
        description="aggregated grants show an hour only if it holds at least this many "
        "samples or events (fewer would give the raw values away)",
    )
    partner_max_window_days: int = Field(
        default=366, ge=1, le=3660, description="longest window of a partner indicator request"
    )
    partner_grant_max_days: int = Field(
        default=365, ge=1, le=3660, description="latest grant expiry, in days from the request"
    )
    partner_streams_per_client: int = Field(
        default=4, ge=1, le=1000, description="open live streams per client and API process"
    )
    partner_stream_min_interval_s: float = Field(
        default=5.0, gt=0, le=300, description="shortest check interval of a live stream"
    )
    webhook_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="how often webhooks' indicators are checked"
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60, description="per delivery")
    webhook_retry_s: float = Field(
        default=2.0, gt=0, le=3600, description="first retry delay; doubles per failed attempt"
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, description="failed attempts before a webhook is stopped"
    )
    webhook_private_targets: bool = Field(
        default=False,
        description="allow webhook URLs on loopback or private addresses and plain http "
        "(development and tests only)",
    )

    @field_validator("token_secret", "audit_key")
    @classmethod
    def _no_placeholder_secret(cls, value: SecretStr | None, info: ValidationInfo) -> Any:
        if value is None or info.data.get("insecure_dev_secrets"):
            return value
        text = value.get_secret_value()
        lowered = text.lower()
        if len(text) < 32 or len(set(text)) < 8 or any(w in lowered for w in _PLACEHOLDERS):
            raise ValueError(
                f"{info.field_name} looks like a placeholder: use 32+ random characters "
                "(or set PLANTWIRE_INSECURE_DEV_SECRETS=1 for development)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return value

    @model_validator(mode="before")
    @classmethod
    def _mqtt_url_from_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mqtt_url_file"):
            from pathlib import Path

            try:
                url = Path(data["mqtt_url_file"]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"mqtt_url_file: {exc.strerror}: {exc.filename}") from None
            url = url.removeprefix("MQTT_URL=")
            data = {k: v for k, v in data.items() if k.lower() not in _MQTT_URL_KEYS}
            data["MQTT_URL"] = url
        return data

    @field_validator("mqtt_url", "gateway_mqtt_url")
    @classmethod
    def _mqtt_url_parses(cls, value: str) -> str:
        from plantwire_bus.mqtt import parse_mqtt_url

        parse_mqtt_url(value)
        return value

    @model_validator(mode="after")
    def _shared_needs_v5(self) -> PlatformSettings:
        from plantwire_bus.mqtt import parse_mqtt_url

        address = parse_mqtt_url(self.mqtt_url)
        if self.shared_group is not None and not address.mqtt5:
            raise ValueError("shared_group needs MQTT v5 (remove ?protocol=3.1.1)")
        return self

    @property
    def ingest_client_id(self) -> str:
        return self.client_id or f"{self.host_id}-ingest"
