"""Application settings, read from the environment (prefix ``APP_``) or an env file.

The env file defaults to ``.env`` in the working directory; set ``APP_ENV_FILE`` to
point at another one (the deploy role writes e.g. ``/etc/aiinfra/app.env``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="APP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- connections -------------------------------------------------------
    database_url: SecretStr = SecretStr("postgresql://aiinfra@127.0.0.1:5432/aiinfra")
    redis_url: SecretStr | None = SecretStr("redis://127.0.0.1:6379/0")
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    es_url: str | None = None
    es_index: str = "documents"
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_verify_tls: bool = True
    es_ca_file: str | None = None

    # --- pools and timeouts ------------------------------------------------
    db_pool_min: int = Field(default=2, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    db_command_timeout: float = Field(default=10.0, gt=0)
    redis_pool_max: int = Field(default=20, ge=1)
    redis_timeout: float = Field(default=0.5, gt=0)
    amqp_publish_timeout: float = Field(default=5.0, gt=0)
    ready_timeout: float = Field(default=2.0, gt=0)
    http_timeout: float = Field(default=10.0, gt=0)

    # --- HTTP server (aiinfra-api) ----------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    forwarded_allow_ips: str = "127.0.0.1"
    graceful_timeout: int = Field(default=20, ge=1)
    # Idle keep-alive connections stay open this long. Above the proxy's own
    # upstream keepalive_timeout, so nginx always closes an idle connection
    # first: else it can send a request on a connection uvicorn is closing,
    # and a POST (never retried) gets a 502.
    keepalive_timeout: int = Field(default=75, ge=1)

    # --- behaviour ---------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    cache_ttl: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    release: str = "dev"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    redis_required: bool = True
    search_required: bool = True

    # --- tracing -------------------------------------------------------------
    # OTLP/HTTP endpoint of Tempo (e.g. http://10.0.0.5:4318); empty: no traces.
    otlp_endpoint: str | None = None
    otlp_service_name: str = "aiinfra-app"
    otlp_timeout: float = Field(default=5.0, gt=0)

    # --- messaging topology ------------------------------------------------
    events_exchange: str = "events"
    task_queue: str = "tasks.index"
    dead_letter_exchange: str = "tasks.dlx"
    dead_letter_queue: str = "tasks.index.dead"
    # Must match how the platform's rabbitmq role declares the queues: a queue's
    # type is fixed at declaration, and a mismatch is a channel error.
    queue_type: Literal["quorum", "classic"] = "quorum"

    # --- worker ------------------------------------------------------------
    worker_prefetch: int = Field(default=10, ge=1)
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("es_url", mode="before")
    @classmethod
    def _empty_es(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("otlp_endpoint", mode="before")
    @classmethod
    def _empty_otlp(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            raise ValueError("APP_OTLP_ENDPOINT must be an http(s) URL, e.g. http://tempo:4318")
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_redis(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def search_backend(self) -> str:
        return "elasticsearch" if self.es_url else "postgres"


def load_settings(env_file: str | None = None) -> Settings:
    """Build settings from the environment plus the env file (APP_ENV_FILE or .env)."""
    path = env_file or os.environ.get("APP_ENV_FILE") or ".env"
    return Settings(_env_file=path)  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
