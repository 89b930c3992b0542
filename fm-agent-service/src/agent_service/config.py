"""Settings of the agent service (env prefix FM_AGENT_; shared FM_* inherited)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from fm_common.contracts.knowledge import SearchMode
from fm_common.settings import ServiceCallerSettings

ProviderKind = Literal["openai", "anthropic", "fireworks", "openai_compatible"]


class ProviderConfig(BaseModel):
    """One LLM provider of the chain (FM_AGENT_PROVIDERS is a JSON list of these)."""

    name: str = Field(min_length=1, max_length=64)
    kind: ProviderKind
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Send attached images to this provider (a vision model), each with every region the
    # redactor flags in its OCR text blacked out; never when that fails (ADR 0112).
    send_images: bool = False


class Settings(ServiceCallerSettings):
    service_name: ClassVar[str] = "agent"
    model_config = SettingsConfigDict(env_prefix="FM_AGENT_", extra="ignore", frozen=True)

    # The provider chain in failover order; empty = degraded mode (no LLM).
    providers: list[ProviderConfig] = Field(default_factory=list)
    # One deadline for a whole turn (context, every provider attempt, the write-back).
    turn_deadline_seconds: float = Field(default=60.0, gt=0)
    # Turns one user may have running at once (sync and streamed; 429 beyond).
    max_concurrent_turns_per_user: int = Field(default=2, ge=1)
    max_output_tokens: int = Field(default=1500, ge=64, le=32_000)
    # LLM calls per turn (the first answer, the one retry of a malformed answer, waits).
    max_steps: int = Field(default=3, ge=1, le=10)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)

    # Input caps (413 beyond).
    max_query_chars: int = Field(default=20_000, ge=1)
    max_pasted_chars: int = Field(default=1_000_000, ge=1)
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_files: int = Field(default=5, ge=0)

    # Context budgets (tokens ~ chars / 4).
    retrieval_limit: int = Field(default=5, ge=0, le=20)
    # How the knowledge base is searched for a turn's passages: hybrid (semantic + BM25 +
    # the runbook title) puts the right runbook first more often (ADR 0115).
    retrieval_mode: SearchMode = "hybrid"
    history_messages: int = Field(default=12, ge=0, le=100)
    passage_chars: int = Field(default=1500, ge=100)
    evidence_token_budget: int = Field(default=1500, ge=100)
    # How long a turn waits for the worker to read an attached image (OCR) or office
    # document; past it the turn goes on without that text (bounded by the deadline).
    attachment_text_wait_seconds: float = Field(default=20.0, ge=0)

    # Hosts that links and images in answers may point to (others are stripped).
    link_allowlist: tuple[str, ...] = ()

    # Turns beyond this many in flight in this process are queued for the worker (202).
    # Save each generated post-mortem into the owner's knowledge base (personal runbook).
    save_postmortems_to_knowledge: bool = False

    max_inflight_turns: int = Field(default=16, ge=1)
    broker_url: str | None = None
    idempotency_ttl_seconds: int = 24 * 3600
    # The key that encrypts the originals of each case's redaction map in Redis
    # (AES-256-GCM; a placeholder is refused outside development). The map lives as long
    # as its case (deleted with it); a TTL > 0 also expires it after that many seconds.
    redaction_key: SecretStr = SecretStr("change-me")
    redaction_ttl_seconds: int = Field(default=0, ge=0)

    @property
    def sends_images(self) -> bool:
        return any(p.send_images for p in self.providers)

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url
