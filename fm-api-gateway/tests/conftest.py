from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fm_common.devstack import free_port
from fm_common.testing.redis_server import RedisServer
from fm_common.testing.tokens import TokenIssuer
from gateway.config import Settings
from gateway.main import create_app
from gateway.proxy.routing import SERVICES

from .servers import Gate, ServerThread, make_upstream


@pytest.fixture(scope="session")
def gates() -> dict[str, Gate]:
    return {"sse": Gate(), "download": Gate(), "sse_abandoned": Gate()}


@pytest.fixture(scope="session")
def upstreams(gates: dict[str, Gate]) -> Iterator[dict[str, ServerThread]]:
    servers = {name: ServerThread(make_upstream(name, gates)).start() for name in SERVICES}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def dead_url() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def gateway_settings(
    upstreams: dict[str, ServerThread],
    redis_url: str,
    issuer: TokenIssuer,
    dead_url: str,
    /,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {f"{n}_url": s.url for n, s in upstreams.items()}
    values.update(
        redis_url=redis_url,
        jwks_url=issuer.jwks_url,
        chroma_url=dead_url,
        upstream_timeout=1.0,
        log_level="WARNING",
        dashboard_dir=Path("/nonexistent-dashboard"),
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def start_gateway(
    upstreams: dict[str, ServerThread],
    redis_server: RedisServer,
    token_issuer: TokenIssuer,
    dead_url: str,
) -> Iterator[Callable[..., str]]:
    """Start a gateway (real uvicorn) with settings overrides; returns its base URL."""
    started: list[ServerThread] = []

    def start(**overrides: Any) -> str:
        settings = gateway_settings(
            upstreams, redis_server.url, token_issuer, dead_url, **overrides
        )
        server = ServerThread(create_app(settings)).start()
        started.append(server)
        return server.url

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def gateway_url(start_gateway: Callable[..., str]) -> str:
    return start_gateway()


@pytest.fixture
async def client(gateway_url: str) -> Any:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10.0) as c:
        yield c
