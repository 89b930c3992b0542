"""The agent service app (port 8006): turns, titles, capabilities. Stateless: the case
service holds the state; redaction maps, idempotency records and jobs live in Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from agent_service.api.routes import meta, title, turns
from agent_service.config import Settings
from agent_service.domain.llm.chain import ProviderChain
from agent_service.domain.privacy.detect import detect_secrets_patterns
from agent_service.runtime import build_runtime
from fm_common.app import create_service_app
from fm_common.settings import load_settings


def create_app(settings: Settings | None = None, *, chain: ProviderChain | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        detect_secrets_patterns()  # load the detectors once, not in the first turn
        app.state.runtime = build_runtime(settings, app.state.http, app.state.redis, chain)
        try:
            yield
        finally:
            pending = list(app.state.runtime.background)
            if pending:  # streamed turns whose client left still finish and are stored
                await asyncio.wait(pending, timeout=settings.turn_deadline_seconds)
            if chain is None:  # a chain given by the caller is the caller's to close
                await app.state.runtime.chain.aclose()

    app = create_service_app(
        settings,
        title="FaultMaven agent service",
        description="Troubleshooting turns: context, retrieval, redaction, LLM failover.",
        lifespan=lifespan,
    )
    app.include_router(turns.router)
    app.include_router(title.router)
    app.include_router(meta.router)
    return app
