"""Settings of the auth service (env prefix FM_AUTH_; shared ones also from FM_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from fm_common.client_address import DEFAULT_TRUSTED_PROXIES
from fm_common.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    service_name: ClassVar[str] = "auth"
    uses_database: ClassVar[bool] = True
    model_config = SettingsConfigDict(env_prefix="FM_AUTH_", extra="ignore", frozen=True)

    registration_enabled: bool = True
    dev_login_enabled: bool = False
    # The first admin: created at start with this password (or, when the account exists,
    # made admin only if this is its password). Never by registering a name.
    bootstrap_admin_username: str | None = Field(
        default=None, min_length=3, max_length=50, pattern=r"^[A-Za-z0-9._-]+$"
    )
    bootstrap_admin_password: SecretStr | None = None
    # Comma-separated usernames of EXISTING accounts that get the admin role (global
    # knowledge base writes). Empty by default: a name listed before its account exists
    # goes to whoever registers it first.
    admin_usernames: str = ""

    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=7 * 86_400, ge=300)
    # PEM Ed25519 private key: the text itself (FM_AUTH_SIGNING_KEY, e.g. from a secret)
    # or a file (FM_AUTH_SIGNING_KEY_PATH, e.g. a mounted secret). When neither is set it
    # is generated into <data_dir>/auth/signing_key.pem (self-hosted only).
    signing_key: SecretStr | None = None
    signing_key_path: Path | None = None
    # Generate the key at FM_AUTH_SIGNING_KEY_PATH when that file does not exist yet (a
    # compose volume of its own on first start). Off by default, so that a mounted secret
    # that is missing stops the service instead of replacing the key; never in enterprise.
    create_signing_key: bool = False
    # Retired keys (PEM, private or public half) whose tokens are still honoured and
    # published in the JWKS (each by its kid) until they expire: key rotation without
    # logging anyone out. Files, and/or PEM blocks in one setting.
    previous_key_paths: tuple[Path, ...] = ()
    previous_keys: SecretStr | None = None

    # The credential of the processes that call other services' /internal routes (shared
    # FM_SERVICE_CLIENT_SECRET) and the client names they may ask as (the token's subject
    # is `service:<name>`). ADR 0135.
    service_client_ids: tuple[str, ...] = ("worker", "agent", "evidence", "knowledge")
    service_client_secret: SecretStr | None = None
    service_token_max_ttl_seconds: int = Field(default=300, ge=1, le=300)

    # Password policy at registration: at least this many characters, and a zxcvbn score
    # (0-4, against the common and breached passwords it ships) of at least this much.
    password_min_length: int = Field(default=8, ge=8, le=64)
    password_min_score: int = Field(default=2, ge=0, le=4)

    # bcrypt cost; 12 in production (~0.25 s per hash on a laptop core).
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)

    # Login throttling: failures counted per account and per client address in a window.
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # Accounts registered per client address in a window.
    registrations_per_address: int = Field(default=20, ge=1)
    registration_window_seconds: int = Field(default=3600, ge=1)
    # Peers whose X-Forwarded-For is believed (the gateway).
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES

    @model_validator(mode="after")
    def _bootstrap_admin_needs_a_password(self) -> Settings:
        if self.bootstrap_admin_username and not (
            self.bootstrap_admin_password and len(self.bootstrap_admin_password) >= 8
        ):
            raise ValueError(
                "FM_AUTH_BOOTSTRAP_ADMIN_PASSWORD (8+ characters) must be set with "
                "FM_AUTH_BOOTSTRAP_ADMIN_USERNAME"
            )
        return self

    @model_validator(mode="after")
    def _no_dev_login_in_production(self) -> Settings:
        if self.dev_login_enabled and self.environment == "production":
            raise ValueError("FM_AUTH_DEV_LOGIN_ENABLED must not be true in production")
        return self

    @model_validator(mode="after")
    def _one_signing_key(self) -> Settings:
        if self.signing_key is not None and self.signing_key_path is not None:
            raise ValueError("set FM_AUTH_SIGNING_KEY or FM_AUTH_SIGNING_KEY_PATH, not both")
        return self

    def local_state(self) -> list[str]:
        kept = super().local_state()
        if self.create_signing_key:
            kept.append(
                "FM_AUTH_CREATE_SIGNING_KEY is true: a replica would generate its own signing "
                "key where the mounted one is missing"
            )
        if self.signing_key is None and self.signing_key_path is None:
            kept.append(
                "FM_AUTH_SIGNING_KEY or FM_AUTH_SIGNING_KEY_PATH is unset: each replica would "
                "generate its own signing key in its data dir"
            )
        return kept

    @property
    def admin_username_set(self) -> frozenset[str]:
        return frozenset(u.strip().lower() for u in self.admin_usernames.split(",") if u.strip())

    @property
    def effective_signing_key_path(self) -> Path:
        return self.signing_key_path or self.data_dir / "auth" / "signing_key.pem"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'auth' / 'auth.db'}"
