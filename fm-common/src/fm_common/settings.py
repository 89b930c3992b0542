"""Settings base shared by every service.

Each service declares `class Settings(BaseServiceSettings)` with its own env prefix
(`FM_CASE_`); shared settings are read from the service prefix first and then from the
plain `FM_` prefix, so `FM_CASE_REDIS_URL` overrides `FM_REDIS_URL` for one service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

Environment = Literal["development", "test", "production"]
# self-hosted: one host, state may live in the data dir. enterprise: replicas on many
# hosts sharing only PostgreSQL, Redis, Chroma and S3 (ADR 0145).
Deployment = Literal["self-hosted", "enterprise"]

# Values that must never run outside development: the .env.example placeholders.
S = TypeVar("S", bound="BaseServiceSettings")

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "password", "dev"})


def split_list(value: object) -> object:
    """A list setting as one environment variable: a JSON list or comma-separated words."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


# List settings that read `a, b` as well as `["a", "b"]` (as .env.example writes them).
StrList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
StrTuple = Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_list)]


class BaseServiceSettings(BaseSettings):
    """Settings every FaultMaven process reads."""

    model_config = SettingsConfigDict(env_prefix="FM_", extra="ignore", frozen=True)

    # Name used in logs, metrics and the default SQLite file name; set by each subclass.
    service_name: ClassVar[str] = "service"
    # The service keeps rows in SQL (SQLite in the data dir unless database_url is set).
    uses_database: ClassVar[bool] = False

    environment: Environment = "development"
    # enterprise: the process refuses to start where it would keep authoritative state
    # on its local disk (SQLite, a generated signing key, local blob storage).
    deployment: Deployment = "self-hosted"
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    data_dir: Path = Path("data")

    host: str = "127.0.0.1"
    port: int = 0

    redis_url: str = "redis://127.0.0.1:6379/0"
    chroma_url: str = "http://127.0.0.1:8007"

    gateway_url: str = "http://127.0.0.1:8000"
    auth_url: str = "http://127.0.0.1:8001"
    session_url: str = "http://127.0.0.1:8002"
    case_url: str = "http://127.0.0.1:8003"
    knowledge_url: str = "http://127.0.0.1:8004"
    evidence_url: str = "http://127.0.0.1:8005"
    agent_url: str = "http://127.0.0.1:8006"

    # Token verification (every service verifies every token; see DESIGN.md "Identity").
    jwt_issuer: str = "faultmaven"
    jwt_audience: str = "faultmaven-api"
    jwt_algorithms: tuple[str, ...] = ("EdDSA",)
    jwks_url: str | None = Field(default=None, description="Defaults to the auth service's JWKS")
    jwks_cache_seconds: int = 300

    # Service-to-service HTTP.
    http_connect_timeout: float = 2.0
    http_timeout: float = 15.0

    # SQL: SQLite in the data dir unless a URL is given (postgresql+asyncpg://...).
    database_url: str | None = None

    # Seconds a client is told to wait when a dependency is down (Retry-After on 503).
    retry_after_seconds: int = 5

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared = EnvSettingsSource(settings_cls, env_prefix="FM_", case_sensitive=False)
        return init_settings, env_settings, shared, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> BaseServiceSettings:
        if self.environment == "development":
            return self
        for name, value in self:
            if isinstance(value, SecretStr) and value.get_secret_value() in PLACEHOLDER_SECRETS:
                prefix = self.model_config.get("env_prefix", "FM_")
                raise ValueError(
                    f"{prefix}{name.upper()} is a placeholder; set a real secret "
                    f"outside development"
                )
        return self

    @model_validator(mode="after")
    def _enterprise_keeps_nothing_on_local_disk(self) -> BaseServiceSettings:
        if self.deployment != "enterprise":
            return self
        kept = self.local_state()
        if kept:
            raise ValueError(
                "FM_DEPLOYMENT=enterprise keeps no authoritative state on local disk, but "
                + "; ".join(kept)
            )
        return self

    def local_state(self) -> list[str]:
        """What this process would keep authoritatively in its data dir, each naming the
        setting that moves it to a shared store (refused in enterprise mode). Caches
        rebuilt from a shared store (BM25 indexes, the ONNX model) are not listed."""
        kept = []
        url = self.database_url or ""
        if self.uses_database and (not url or url.startswith("sqlite")):
            prefix = self.model_config.get("env_prefix", "FM_")
            kept.append(
                f"{prefix}DATABASE_URL (or FM_DATABASE_URL) is {'SQLite' if url else 'unset'}: "
                "set a postgresql+asyncpg:// URL"
            )
        return kept

    @property
    def effective_jwks_url(self) -> str:
        return self.jwks_url or f"{self.auth_url}/api/v1/auth/.well-known/jwks.json"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"

    def redacted(self) -> dict[str, Any]:
        """Settings as loggable data (secrets masked)."""
        return {
            k: ("***" if isinstance(v, SecretStr) else v)
            for k, v in self.model_dump(mode="json").items()
        }


class ServiceCallerSettings(BaseServiceSettings):
    """Settings of a service that calls other services' /internal routes, which take
    service tokens only (ADR 0135): its credential at the auth service. Only these
    processes are given FM_SERVICE_CLIENT_SECRET."""

    service_client_secret: SecretStr | None = None
    # The client name (the token's subject is `service:<name>`); the service's by default.
    service_client_id: str | None = None


def load_settings(cls: type[S]) -> S:
    """Build settings, or stop the process with one clear line naming the bad setting."""
    from pydantic import ValidationError

    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "FM_")
        lines = []
        for err in exc.errors():
            loc = "_".join(str(p) for p in err["loc"]).upper()
            if not loc and err["type"] == "value_error":
                # A check across settings: its message names the settings itself.
                lines.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = f"{prefix}{loc}" if loc else prefix.rstrip("_")
            lines.append(f"{name}: {err['msg']}")
        raise SystemExit(f"invalid configuration: {'; '.join(lines)}") from None
