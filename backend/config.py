"""One validated settings model, filled from flags and `COMMUNE_*` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import BaseModel, Field, field_validator

ENV_PREFIX = "COMMUNE_"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("commune", appauthor=False))


class Settings(BaseModel):
    """Everything the server can be told. Field names match the flags (`--smtp-port` → smtp_port)."""

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = ""
    """`postgresql://user:pass@host:port/db` to keep everything in PostgreSQL; empty = the SQLite file
    in the data directory."""
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=0, le=65535)
    smtp_port: int = Field(2525, ge=0, le=65535)
    hostname: str = "localhost"
    default_domain: str = "commune.localhost"
    relay: str = ""
    relay_username: str = ""
    relay_password: str = ""
    relay_tls: str = Field("none", pattern="^(none|starttls|tls)$")
    dns_servers: list[str] = Field(default_factory=list)
    rate_limit: float = Field(100.0, ge=0)
    max_body_bytes: int = 40 * 1024 * 1024
    max_attachment_bytes: int = 25 * 1024 * 1024
    max_message_bytes: int = 40 * 1024 * 1024
    max_recipients: int = 100
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    body_timeout: float = 60.0
    max_connections: int = 1000
    smtp_max_connections_per_client: int = Field(20, ge=1)
    smtp_max_commands_without_progress: int = Field(50, ge=1)
    smtp_delay_after_unknown_recipients: int = Field(5, ge=0)
    smtp_max_unknown_recipients: int = Field(10, ge=1)
    smtp_unknown_recipient_delay: float = Field(1.0, ge=0)
    max_connections_per_client: int = Field(64, ge=1)
    """HTTP connections one client address may hold at once (each 127.x address counts on its own)."""
    smtp_enabled: bool = True
    smtp_tls_cert: str = ""
    smtp_tls_key: str = ""
    mail_auth_dns_timeout: float = Field(2.0, gt=0)
    webhook_max_attempts: int = 8
    webhook_timeout: float = 10.0
    webhook_allow_private: bool = False
    webhook_backoff: float = Field(30.0, gt=0)
    webhook_backoff_max: float = Field(3600.0, gt=0)
    sse_heartbeat: float = Field(15.0, gt=0)
    delivery_max_age: float = 5 * 24 * 3600.0
    delivery_backoff: float = Field(60.0, gt=0)
    delivery_backoff_max: float = Field(4 * 3600.0, gt=0)
    delivery_timeout: float = Field(60.0, gt=0)
    delivery_concurrency: int = Field(20, ge=1)
    smtp_direct_port: int = Field(25, ge=1, le=65535)
    delivery_allow_private: bool = False
    workers_enabled: bool = True
    retention_interval: float = Field(3600.0, gt=0)
    public_url: str = ""
    node_id: str = ""
    """This process's name in leases and cross-node events; empty = a random one per start."""
    lease_seconds: float = Field(60.0, gt=0)
    """How long a claimed queue item, webhook delivery, due outbox row or sweep stays this node's without
    renewal; after that (its node died) any node may take it."""

    @field_validator("dns_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("database_url takes a postgresql:// URL (empty: the SQLite file in the data dir)")
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        if isinstance(value, str):
            return Path(value).expanduser()
        return value

    @classmethod
    def load(cls, overrides: dict[str, object] | None = None, environ: dict[str, str] | None = None) -> Settings:
        """Environment first, then explicit overrides (flags) on top; `None` overrides are ignored."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            env_value = environ.get(ENV_PREFIX + name.upper())
            if env_value is not None and env_value != "":
                values[name] = env_value
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        return cls.model_validate(values)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "commune.db"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "server.secret"
