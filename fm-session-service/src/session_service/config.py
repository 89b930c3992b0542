"""Settings of the session service (env prefix FM_SESSION_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fm_common.client_address import DEFAULT_TRUSTED_PROXIES
from fm_common.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    service_name: ClassVar[str] = "session"
    model_config = SettingsConfigDict(env_prefix="FM_SESSION_", extra="ignore", frozen=True)

    # Session creations allowed per client address per window (429 with Retry-After).
    create_limit_per_address: int = Field(default=60, ge=1)
    create_limit_window_seconds: int = Field(default=60, ge=1)
    # How long an expired session is still recognised as "expired" (401 SESSION_EXPIRED on
    # heartbeat) rather than unknown (404).
    expired_marker_seconds: int = Field(default=86_400, ge=60)
    # Peers whose X-Forwarded-For is believed (the gateway).
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES
