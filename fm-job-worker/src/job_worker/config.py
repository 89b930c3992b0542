"""Settings of the Celery worker and beat (env prefix FM_WORKER_, shared FM_*)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from fm_common.settings import BaseServiceSettings


class Settings(BaseServiceSettings):
    service_name: ClassVar[str] = "worker"
    model_config = SettingsConfigDict(env_prefix="FM_WORKER_", extra="ignore", frozen=True)

    concurrency: int = Field(default=2, ge=1)
    # The worker's credential for service tokens (FM_SERVICE_CLIENT_SECRET).
    service_client_secret: SecretStr = SecretStr("")
    service_client_id: str = "worker"

    # A message not acknowledged within this many seconds is redelivered by Redis; it
    # must exceed the longest task's hard time limit.
    visibility_timeout: int = Field(default=7200, ge=60)
    # Per-task limits (seconds): soft raises inside the task, hard kills the child.
    ingest_soft_time_limit: int = Field(default=900, ge=5)
    ingest_time_limit: int = Field(default=960, ge=10)
    maintenance_soft_time_limit: int = Field(default=3000, ge=5)
    maintenance_time_limit: int = Field(default=3300, ge=10)
    # A child that grew past this (KiB) is replaced after its current task.
    max_memory_per_child_kb: int = Field(default=3_000_000, ge=100_000)
    # A hard cap that bites during a task, before the host runs out: each child's
    # address space may grow this much (KiB) past its size at start (0: no cap). Parsing
    # has its own, smaller cap per document (FM_KNOWLEDGE_PARSE_MEMORY_MB).
    memory_limit_kb: int = Field(default=4_000_000, ge=0)
    # Torch threads per child; 0 divides the CPUs among the children.
    torch_threads: int = Field(default=0, ge=0)
    # Load the embedding model in the main process before forking (a worker that
    # consumes the ingest queue): children start warm and share the weights.
    preload_embedder: bool = True

    # A long task that can be resumed (evidence indexing) gives its child back after
    # this many seconds and sends the rest as its next slice, so another user's waiting
    # task runs in between (ADR 0160); 0: never.
    slice_seconds: float = Field(default=5.0, ge=0)

    # Transient failures (a store down) are retried with exponential backoff.
    max_retries: int = Field(default=6, ge=0)
    retry_backoff_max: int = Field(default=300, ge=1)
    # In-flight work whose heartbeat is older than this is redone (or failed) by reap_stale.
    stale_after_seconds: int = Field(default=1800, ge=30)
    max_attempts: int = Field(default=4, ge=1)
    # Files and vectors younger than this are never treated as orphans (uploads racing).
    orphan_grace_seconds: int = Field(default=3600, ge=0)

    # Beat's leader lock in Redis: a standby beat takes over this many seconds after the
    # leader stops renewing it; the leader wakes at least every max_loop_interval.
    beat_lock_timeout: int = Field(default=150, ge=10)
    beat_max_loop_interval: int = Field(default=30, ge=1)

    # Beat intervals (seconds).
    reap_interval: int = Field(default=300, ge=5)
    purge_orphans_interval: int = Field(default=3600, ge=60)
    purge_cases_interval: int = Field(default=86400, ge=60)
