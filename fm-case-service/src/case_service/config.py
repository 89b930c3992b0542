"""Settings of the case service (env prefix FM_CASE_, shared FM_* inherited)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fm_common.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    service_name: ClassVar[str] = "case"
    uses_database: ClassVar[bool] = True
    model_config = SettingsConfigDict(env_prefix="FM_CASE_", extra="ignore", frozen=True)

    # Closed and resolved cases are purged this many days after they ended.
    retention_days: int = Field(default=30, ge=1)
    # Organization id reported on every case (self-hosted: one organization).
    organization_id: str = "default"
    # The outbox sweeper re-enqueues pending cleanups (0 turns the sweeper off).
    outbox_sweep_seconds: float = Field(default=60.0, ge=0)
    # A pending cleanup is enqueued again when its last enqueue is this old.
    outbox_retry_seconds: float = Field(default=300.0, ge=1)
