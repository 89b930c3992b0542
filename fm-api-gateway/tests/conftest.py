from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fm_common.devstack import free_port
from fm_common.testing.redis_server import RedisServer
from fm_common.testing.tokens import TokenIssuer
from gateway.main import create_app
from gateway.proxy.routing import SERVICES

# Helpers live in a module of their own name (not a `tests` package, which every
# service's tests dir would claim): loaded here once, imported by name in the tests.
_spec = importlib.util.spec_from_file_location(
    "gateway_testkit", Path(__file__).parent / "gateway_testkit.py"
)
assert _spec is not None
assert _spec.loader is not None
_kit = importlib.util.module_from_spec(_spec)
sys.modules["gateway_testkit"] = _kit
_spec.loader.exec_module(_kit)
Gate, ServerThread = _kit.Gate, _kit.ServerThread
make_upstream, gateway_settings = _kit.make_upstream, _kit.gateway_settings


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
