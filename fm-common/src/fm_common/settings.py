"""Settings base shared by every service.

Each service declares `class Settings(BaseServiceSettings)` with its own env prefix
(`FM_CASE_`); shared settings are read from the service prefix first and then from the
plain `FM_` prefix, so `FM_CASE_REDIS_URL` overrides `FM_REDIS_URL` for one service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
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


@dataclass(frozen=True)
class StorageLocation:
    """Where blobs live: a local directory (`path`) or an S3 bucket and key prefix."""

    scheme: Literal["file", "s3"]
    path: Path = Path()
    bucket: str = ""
    # Empty, or ending with "/".
    prefix: str = ""


def parse_storage_url(url: str, data_dir: Path) -> StorageLocation:
    """FM_STORAGE_URL: empty (the data dir), a path, file:///path, or s3://bucket/prefix."""
    text = url.strip()
    if not text:
        return StorageLocation("file", path=data_dir)
    parsed = urlsplit(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError("an s3:// storage URL names a bucket: s3://bucket/prefix")
        prefix = parsed.path.strip("/")
        return StorageLocation("s3", bucket=parsed.netloc, prefix=f"{prefix}/" if prefix else "")
    if parsed.scheme == "file":
        return StorageLocation("file", path=Path(parsed.path))
    if parsed.scheme:
        raise ValueError(f"storage URL scheme {parsed.scheme!r} is not supported (s3:// or a path)")
    return StorageLocation("file", path=Path(text))


class BaseServiceSettings(BaseSettings):
    """Settings every FaultMaven process reads."""

    model_config = SettingsConfigDict(env_prefix="FM_", extra="ignore", frozen=True)

    # Name used in logs, metrics and the default SQLite file name; set by each subclass.
    service_name: ClassVar[str] = "service"
    # The service keeps rows in SQL (SQLite in the data dir unless database_url is set).
    uses_database: ClassVar[bool] = False
    # The service keeps files in blob storage (the data dir unless FM_STORAGE_URL is s3://).
    uses_blobs: ClassVar[bool] = False

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

    # Blob storage (fm_common.blobs, ADR 0141): unset = the data dir; a path (or
    # file:///path); `s3://bucket/prefix` for S3 or any S3-compatible store. The S3
    # endpoint is for MinIO, Ceph RGW...; unset = AWS. Credentials unset = boto's default
    # chain (AWS_* env, web identity / IRSA, instance profile).
    storage_url: str = ""
    storage_s3_endpoint_url: str | None = None
    storage_s3_region: str | None = None
    storage_s3_access_key_id: str | None = None
    storage_s3_secret_access_key: SecretStr | None = None

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

    @field_validator(
        "storage_s3_endpoint_url",
        "storage_s3_region",
        "storage_s3_access_key_id",
        "storage_s3_secret_access_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `FM_STORAGE_S3_REGION=` (as .env.example writes it) means "unset".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("storage_url")
    @classmethod
    def _storage_url_is_known(cls, value: str) -> str:
        parse_storage_url(value, Path("data"))
        return value.strip()

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
        if self.uses_blobs and self.storage_location.scheme != "s3":
            kept.append(
                "FM_STORAGE_URL is a local directory: set s3://bucket/prefix (S3, MinIO, Ceph "
                "RGW) and its FM_STORAGE_S3_* settings"
            )
        return kept

    @property
    def storage_location(self) -> StorageLocation:
        return parse_storage_url(self.storage_url, self.data_dir)

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
