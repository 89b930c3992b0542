"""The one way a FaultMaven service app is assembled and served.

`create_service_app` wires what every service shares: logging, the error handlers,
request ids, metrics, /health /ready /metrics, and a lifespan that opens the shared HTTP
client, Redis and the token verifier before the service's own resources.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI

from fm_common.auth import TokenVerifier
from fm_common.clients.base import create_http_client
from fm_common.errors import install_error_handlers
from fm_common.logging import configure_logging
from fm_common.observability import install_observability
from fm_common.redis import create_redis
from fm_common.settings import BaseServiceSettings

log = structlog.get_logger("fm_common.app")

ServiceLifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]
Checks = Callable[[FastAPI], Mapping[str, Callable[[], Awaitable[Any]]]]

VERSION = "0.1.0"


def create_service_app(
    settings: BaseServiceSettings,
    *,
    title: str,
    description: str = "",
    lifespan: ServiceLifespan | None = None,
    checks: Checks | None = None,
    use_redis: bool = True,
    verify_tokens: bool = True,
    jwks: dict[str, Any] | None = None,
) -> FastAPI:
    """A FastAPI app with the shared plumbing of every service.

    `app.state` gets: settings, http (httpx.AsyncClient), redis (when use_redis),
    verifier (when verify_tokens). `jwks` pins the verification keys (the auth service
    passes its own so it never calls itself).
    """
    configure_logging(settings.service_name, settings.log_level, settings.log_format)

    @contextlib.asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.http = create_http_client(
            connect_timeout=settings.http_connect_timeout, timeout=settings.http_timeout
        )
        app.state.redis = create_redis(settings.redis_url) if use_redis else None
        if verify_tokens:
            app.state.verifier = TokenVerifier(
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                algorithms=settings.jwt_algorithms,
                jwks_url=None if jwks is not None else settings.effective_jwks_url,
                jwks=jwks,
                redis=app.state.redis,
                cache_seconds=settings.jwks_cache_seconds,
                http=app.state.http,
            )
        log.info(
            "service.starting", service=settings.service_name, environment=settings.environment
        )
        try:
            if lifespan is not None:
                async with lifespan(app):
                    yield
            else:
                yield
        finally:
            await app.state.http.aclose()
            if app.state.redis is not None:
                await app.state.redis.aclose()
            log.info("service.stopped", service=settings.service_name)

    app = FastAPI(title=title, description=description, version=VERSION, lifespan=_lifespan)
    app.state.settings = settings
    install_error_handlers(app, retry_after=settings.retry_after_seconds)

    def _checks() -> dict[str, Callable[[], Awaitable[Any]]]:
        found: dict[str, Callable[[], Awaitable[Any]]] = {}
        if use_redis and getattr(app.state, "redis", None) is not None:
            found["redis"] = app.state.redis.ping
        if checks is not None:
            found.update(checks(app))
        return found

    install_observability(app, settings.service_name, _checks)
    return app


def uvicorn_options(
    settings: BaseServiceSettings,
    default_port: int,
    *,
    trusted_proxies: Sequence[str] = (),
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> dict[str, Any]:
    """How every service is served (uvloop + httptools). `X-Forwarded-*` is believed only
    from `trusted_proxies` (none by default: the gateway's setting; the services read the
    gateway's header themselves, fm_common.client_address, ADR 0014 and 0091)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port or default_port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_config": None,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        "server_header": False,
        "proxy_headers": bool(trusted_proxies),
        "forwarded_allow_ips": list(trusted_proxies) or None,
    }
    if ssl_certfile is not None:
        options.update(ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    return options


def serve(factory: str, settings: BaseServiceSettings, default_port: int, **options: Any) -> None:
    """Run one service under uvicorn, as the Procfile does; `options`: uvicorn_options'."""
    import uvicorn

    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    uvicorn.run(factory, factory=True, **uvicorn_options(settings, default_port, **options))
