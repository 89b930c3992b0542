"""Gateway settings (env prefix FM_GATEWAY_; shared FM_* settings are inherited)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from fm_common.settings import BaseServiceSettings, StrList

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_ALLOWED_EXTENSIONS = (
    ".md",
    ".txt",
    ".log",
    ".json",
    ".yaml",
    ".yml",
    ".csv",
    ".pdf",
    ".html",
    ".htm",
    ".docx",
    ".pptx",
    ".xlsx",
    ".odt",
    ".ods",
)


class Settings(BaseServiceSettings):
    service_name: ClassVar[str] = "gateway"
    model_config = SettingsConfigDict(env_prefix="FM_GATEWAY_", extra="ignore", frozen=True)

    port: int = 8000
    # Where the gateway is reached from outside; the dashboard's URL and CORS origin.
    public_url: str | None = None
    dashboard_dir: Path = REPO_ROOT / "fm-dashboard" / "dist"

    # CORS: exact origins, or `scheme://*` for any origin of a scheme. The dashboard's
    # own origin (public_url) is always allowed.
    cors_origins: StrList = Field(
        default_factory=lambda: ["chrome-extension://*", "moz-extension://*"]
    )

    # Per-user limit on authenticated routes, per-address limit on public ones.
    rate_limit_per_window: int = Field(default=600, ge=1)
    public_rate_limit_per_window: int = Field(default=120, ge=1)
    rate_limit_window_seconds: int = Field(default=60, ge=1)

    # Request bodies: the general limit, and the larger one for upload routes.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    max_upload_bytes: int = Field(default=55 * 1024 * 1024, ge=1)
    # All request header names and values together (uvicorn itself sets no limit).
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)

    # Upstream calls: connect, time to the response head, idle gap inside a streamed body.
    upstream_connect_timeout: float = Field(default=2.0, gt=0)
    upstream_timeout: float = Field(default=120.0, gt=0)
    stream_idle_timeout: float = Field(default=300.0, gt=0)
    upstream_max_idle_connections: int = Field(default=64, ge=0)

    # Verified tokens kept in memory (per token string, until exp).
    token_cache_size: int = Field(default=10_000, ge=0)

    # /health: components whose failure makes the system unhealthy (503), not degraded.
    critical_components: StrList = Field(default_factory=lambda: ["redis", "auth"])
    health_timeout: float = Field(default=2.0, gt=0)
    # Processes without HTTP reported by their Redis heartbeat (fm_common.heartbeat).
    health_heartbeats: StrList = Field(default_factory=lambda: ["worker", "beat"])
    # A burst of /health calls fans out to every service at most once per this period.
    health_cache_seconds: float = Field(default=1.0, ge=0)

    # /v1/meta/capabilities (maxFileBytes: the knowledge upload limit clients check first).
    max_file_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    allowed_extensions: StrList = Field(default_factory=lambda: list(DEFAULT_ALLOWED_EXTENSIONS))
    max_documents: int = Field(default=10_000, ge=1)
    team_sharing: bool = False
    sso: bool = False
    capabilities_cache_seconds: float = Field(default=30.0, ge=0)
    openapi_cache_seconds: float = Field(default=60.0, ge=0)

    # Serve /metrics on the public port (off: 404; scrape the services' own ports, or
    # turn this on behind a network that only the scraper reaches).
    metrics_public: bool = False

    # A log line for every request, not only for refused and failed ones (each service
    # logs the requests it serves, with the same request id; a line costs ~30-60 us).
    access_log: bool = False

    # Peers whose X-Forwarded-For / -Proto are believed (a TLS proxy in front): IP
    # networks, comma-separated or JSON. None by default: the client is the TCP peer, so
    # nobody can claim another address for the per-address limits (ADR 0091).
    trusted_proxies: StrList = Field(default_factory=list)

    # HTTPS served by the gateway itself (ADR 0092): a PEM certificate (chain) and its key.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @field_validator("critical_components")
    @classmethod
    def _known_components(cls, value: list[str]) -> list[str]:
        known = {
            "auth",
            "session",
            "case",
            "knowledge",
            "evidence",
            "agent",
            "redis",
            "chroma",
            "worker",
            "beat",
        }
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown components {unknown}; known: {sorted(known)}")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if any(origin.strip() == "*" for origin in value):
            raise ValueError(
                "'*' is not allowed: credentials are sent, so list the origins "
                "(or give a scheme as scheme://*)"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP network (give addresses or CIDRs, e.g. "
                    "10.201.53.0/24); '*' is not allowed"
                ) from None
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        files = (self.tls_cert_file, self.tls_key_file)
        if (files[0] is None) != (files[1] is None):
            raise ValueError(
                "FM_GATEWAY_TLS_CERT_FILE and FM_GATEWAY_TLS_KEY_FILE go together: set both"
            )
        for name, path in zip(("TLS_CERT_FILE", "TLS_KEY_FILE"), files, strict=True):
            if path is not None and not path.is_file():
                raise ValueError(f"FM_GATEWAY_{name}: no readable file at {path}")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def effective_public_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return (self.public_url or f"{scheme}://localhost:{self.port}").rstrip("/")

    def service_urls(self) -> dict[str, str]:
        return {
            "auth": self.auth_url,
            "session": self.session_url,
            "case": self.case_url,
            "knowledge": self.knowledge_url,
            "evidence": self.evidence_url,
            "agent": self.agent_url,
        }
