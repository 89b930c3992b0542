"""What a turn needs, opened once per process (the app's lifespan, or the worker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_service.config import Settings
from agent_service.domain.llm.chain import ProviderChain
from agent_service.domain.privacy.redaction import CaseRedactor, MapCipher
from agent_service.domain.turns.idempotency import IdempotencyStore
from fm_common.clients.auth import service_credential
from fm_common.clients.case import CaseClient
from fm_common.clients.evidence import EvidenceClient
from fm_common.clients.knowledge import KnowledgeClient
from fm_common.jobs import JobStore


@dataclass
class AgentRuntime:
    settings: Settings
    redis: Any
    case: CaseClient
    knowledge: KnowledgeClient
    evidence: EvidenceClient
    chain: ProviderChain
    jobs: JobStore
    idempotency: IdempotencyStore
    cipher: MapCipher
    inflight: int = 0
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def redactor(self, case_id: str) -> CaseRedactor:
        """The case's redactor (its placeholder map in Redis, originals encrypted)."""
        return CaseRedactor(self.redis, case_id, self.cipher, self.settings.redaction_ttl_seconds)


def build_chain(settings: Settings) -> ProviderChain:
    return ProviderChain(
        settings.providers,
        max_tokens=settings.max_output_tokens,
        breaker_failures=settings.breaker_failures,
        breaker_reset_seconds=settings.breaker_reset_seconds,
    )


def build_runtime(
    settings: Settings, http: httpx.AsyncClient, redis: Any, chain: ProviderChain | None = None
) -> AgentRuntime:
    retry_after = settings.retry_after_seconds
    # /internal calls (case context and turns, derived evidence) go out with a service
    # token acting for the request's user (ADR 0135); in the worker, with its own.
    tokens = service_credential(settings, http)
    return AgentRuntime(
        settings=settings,
        redis=redis,
        case=CaseClient(settings.case_url, http, retry_after=retry_after, service_tokens=tokens),
        knowledge=KnowledgeClient(settings.knowledge_url, http, retry_after=retry_after),
        evidence=EvidenceClient(
            settings.evidence_url, http, retry_after=retry_after, service_tokens=tokens
        ),
        chain=chain or build_chain(settings),
        jobs=JobStore(redis),
        idempotency=IdempotencyStore(redis, settings.idempotency_ttl_seconds),
        cipher=MapCipher(settings.redaction_key.get_secret_value()),
    )
