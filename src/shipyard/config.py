"""Settings: read once at start-up from ``SHIPYARD_*`` environment variables (and an
optional ``shipyard.env`` file in the data dir), then passed down explicitly."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob Shipyard has. Nothing deeper in the code reads the environment."""

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    home: Path = Field(default=Path(".shipyard"), description="data dir (db, keys, mirrors)")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in home")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    secret_key: str | None = Field(default=None, description="Fernet key for secrets at rest")
    admin_user: str = "admin"
    admin_password: str | None = None
    max_body_bytes: int = 1_048_576
    session_hours: int = 12
    dispatcher: Literal["inprocess", "celery"] = "inprocess"
    broker_url: str = "redis://127.0.0.1:6379/0"
    default_queue: str = Field(default="shipyard", description="queue of targets without a zone")
    allow_local_repos: bool = Field(
        default=False, description="accept file:// and local paths as repo URLs (tests, demos)"
    )
    cookie_secure: bool = False
    trust_proxy_headers: bool = False
    # Integrations: webhooks in, notifications out (docs/integrations.md).
    webhook_max_body_bytes: int = Field(default=1_048_576, description="largest webhook "
                                        "payload accepted (max_body_bytes applies first)")
    webhook_max_age: int = Field(default=3600, description="seconds a signed webhook "
                                 "timestamp may be off by (Gitee)")
    webhook_keep_rejected: int = Field(default=200, description="refused deliveries kept "
                                       "per project")
    allow_private_webhook_urls: bool = Field(
        default=False, description="let notification URLs reach loopback, link-local and "
                                   "private addresses")
    notify_timeout: float = Field(default=10.0, description="seconds per delivery attempt")
    notify_max_attempts: int = Field(default=5, ge=1, le=20)
    notify_backoff: float = Field(default=5.0, description="seconds before the first retry; "
                                  "doubles each time")
    notify_backoff_max: float = 600.0
    notify_ca_file: Path | None = Field(default=None, description="extra CA bundle for "
                                        "outgoing TLS (HTTPS receivers, SMTP)")
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "shipyard@localhost"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'shipyard.db').resolve()}"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.home

    def load_secret_key(self) -> bytes:
        """The key that encrypts secrets at rest: from the environment, else from
        ``home/secret.key``, generated there (mode 0600) on first use."""
        if self.secret_key:
            return self.secret_key.encode()
        from cryptography.fernet import Fernet

        path = self.ensure_home() / "secret.key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        return path.read_bytes().strip()


def generate_password() -> str:
    return secrets.token_urlsafe(12)
