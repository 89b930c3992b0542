"""Assembles the gateway: the plain-ASGI proxy in front, a small FastAPI app for the rest."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI

from fm_common.app import VERSION
from fm_common.errors import install_error_handlers
from fm_common.logging import configure_logging
from fm_common.settings import load_settings
from gateway.api.routes import dashboard, docs, meta
from gateway.config import Settings
from gateway.edge import GatewayApp
from gateway.state import GatewayState

log = structlog.get_logger(__name__)


def create_meta_app(settings: Settings, state: GatewayState) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.open()
        log.info(
            "service.starting",
            service="gateway",
            environment=settings.environment,
            services=settings.service_urls(),
        )
        try:
            yield
        finally:
            await state.close()
            log.info("service.stopped", service="gateway")

    app = FastAPI(
        title="FaultMaven gateway",
        version=VERSION,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = state
    app.state.settings = settings
    install_error_handlers(app, retry_after=settings.retry_after_seconds)
    app.include_router(meta.router)
    app.include_router(docs.router)
    app.include_router(dashboard.router)  # last: it answers every other GET
    return app


def create_app(settings: Settings | None = None) -> GatewayApp:
    settings = settings or load_settings(Settings)
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    state = GatewayState(settings)
    return GatewayApp(settings, create_meta_app(settings, state), state)


def server_options(settings: Settings) -> dict[str, Any]:
    """The gateway's own uvicorn options (fm_common.app.uvicorn_options): which peers'
    X-Forwarded-For it believes, and HTTPS when given a certificate (ADR 0091, 0092)."""
    return {
        "trusted_proxies": tuple(settings.trusted_proxies),
        "ssl_certfile": str(settings.tls_cert_file) if settings.tls_cert_file else None,
        "ssl_keyfile": str(settings.tls_key_file) if settings.tls_key_file else None,
    }
