"""Settings: `LLMWATCH_*` environment variables, then an optional TOML file, then defaults.

Built once by the CLI (or a test) and passed into every factory; nothing reads the environment
at import time. Every default works on a laptop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "llmwatch.toml"


def config_path() -> Path:
    """The TOML file settings are read from: `LLMWATCH_CONFIG`, else `./llmwatch.toml`."""
    return Path(os.environ.get("LLMWATCH_CONFIG", DEFAULT_CONFIG_FILE))


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMWATCH_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # --- process -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    log_level: str = "info"
    data_dir: Path = Path(".llmwatch")
    environment: str = "dev"  # "prod" refuses to start without tokens; see README
    allow_insecure: bool = False  # in prod, start even without the tokens (production_gaps)

    # --- redis ---------------------------------------------------------------------------
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "LLMWATCH_REDIS_URL")
    )
    redis_cluster: bool = False
    # AOF fsync policy of the embedded redis-server: "everysec" (fast, up to ~1 s of loss on a
    # power cut) or "always" (every acknowledged event is on disk).
    redis_appendfsync: str = "everysec"
    partitions: int = Field(1, ge=1, le=1024)

    # --- ingest --------------------------------------------------------------------------
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_batch: int = Field(1000, ge=1)
    publish_timeout_ms: int = Field(2000, ge=10)
    retry_after_s: int = Field(1, ge=1)
    # A request body must arrive within this many seconds (trickled uploads get 408).
    body_timeout_s: float = Field(30.0, gt=0)
    ingest_token: SecretStr | None = None
    ingest_hmac_secret: SecretStr | None = None
    admin_token: SecretStr | None = None
    read_token: SecretStr | None = None
    apps: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_per_ip: int = Field(0, ge=0)  # requests per second; 0 = off
    rate_limit_per_app: int = Field(0, ge=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Hard cap on unconsumed backlog per partition; past it ingest answers 503 (backpressure)
    # instead of letting Redis run out of memory. 0 = no cap.
    stream_max_backlog: int = Field(5_000_000, ge=0)
    # Replicas that must confirm a request's XADDs (Redis WAIT) before it is answered 2xx: an
    # acknowledged event then survives its master's death. 0 = answer once the master has it.
    replica_acks: int = Field(0, ge=0)

    # --- aggregator ----------------------------------------------------------------------
    consumer_batch: int = Field(500, ge=1, le=10_000)
    consumer_block_ms: int = Field(1000, ge=1)
    claim_idle_ms: int = Field(30_000, ge=100)
    max_deliveries: int = Field(5, ge=1)
    dedup_window_s: int = Field(3600, ge=1)
    history_max: int = Field(100_000, ge=10)
    feed_max: int = Field(100_000, ge=100)
    run_retention_s: int = Field(7 * 24 * 3600, ge=60)
    notification_window_s: int = Field(3600, ge=1)
    notification_occurrences: int = Field(10, ge=1)
    notification_max: int = Field(1024, ge=1)
    notification_max_age_s: int = Field(90 * 24 * 3600, ge=60)

    # --- stream gateway ------------------------------------------------------------------
    sse_max_streams: int = Field(10_000, ge=1)
    sse_max_per_ip: int = Field(64, ge=1)
    sse_queue_frames: int = Field(1024, ge=1)
    sse_ping_s: float = Field(30.0, gt=0)
    sse_send_timeout_s: float = Field(10.0, gt=0)

    # --- metrics sampler -----------------------------------------------------------------
    sample_interval_s: float = Field(5.0, gt=0)
    pressure_mem_pct: float = Field(90.0, gt=0, le=100)
    pressure_cpu_pct: float = Field(95.0, gt=0, le=100)
    pressure_for_s: float = Field(60.0, ge=0)

    @field_validator("apps", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("redis_appendfsync")
    @classmethod
    def _fsync(cls, value: str) -> str:
        if value not in {"always", "everysec", "no"}:
            raise ValueError("must be always, everysec or no")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_path())
        return (init_settings, env_settings, toml)

    # --- derived -------------------------------------------------------------------------
    @property
    def publish_timeout_s(self) -> float:
        return self.publish_timeout_ms / 1000

    def secret(self, name: str) -> str | None:
        """The plain value of a token setting, or None when unset or empty."""
        value = getattr(self, name)
        if value is None:
            return None
        plain = value.get_secret_value()
        return plain or None


PRODUCTION = frozenset({"prod", "production"})
MIN_TOKEN_CHARS = 16


def production_gaps(settings: Settings, services: list[str]) -> list[str]:
    """What keeps a process running `services` from being safe in production: missing or short
    tokens for the routes it serves. Empty outside `LLMWATCH_ENVIRONMENT=prod`, or when
    `LLMWATCH_ALLOW_INSECURE` says to start anyway. Pure: the CLI turns gaps into a refusal."""
    if settings.environment.strip().lower() not in PRODUCTION or settings.allow_insecure:
        return []
    needed: dict[str, tuple[str, ...]] = {}
    if "ingest" in services:  # the write routes, and /api/apps
        needed["LLMWATCH_INGEST_TOKEN (or LLMWATCH_INGEST_HMAC_SECRET)"] = (
            "ingest_token", "ingest_hmac_secret",
        )  # fmt: skip
    if {"ingest", "stream", "metrics"} & set(services):  # apps, dead letters, /api/reload
        needed["LLMWATCH_ADMIN_TOKEN"] = ("admin_token",)
    gaps: list[str] = []
    for label, names in needed.items():
        values = [v for v in (settings.secret(n) for n in names) if v is not None]
        if not values:
            gaps.append(f"{label} is not set")
        elif all(len(v) < MIN_TOKEN_CHARS for v in values):
            gaps.append(f"{label} is shorter than {MIN_TOKEN_CHARS} characters")
    return gaps


def load_settings(**overrides: Any) -> Settings:
    """Environment + TOML + defaults, with explicit overrides (CLI flags, tests) on top."""
    return Settings(**overrides)
