"""The session service app: sessions in Redis with TTL, heartbeat and resume."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from fm_common.app import create_service_app
from fm_common.settings import load_settings
from session_service.api.routes import internal, sessions
from session_service.config import Settings
from session_service.domain.sessions.repository import SessionStore


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.session_store = SessionStore(
            app.state.redis, marker_seconds=settings.expired_marker_seconds
        )
        yield

    app = create_service_app(
        settings,
        title="FaultMaven session service",
        description="User sessions with TTL, heartbeat and resume by client_id.",
        lifespan=lifespan,
    )
    app.include_router(sessions.router)
    app.include_router(internal.router)
    return app
