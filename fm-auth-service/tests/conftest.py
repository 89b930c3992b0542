from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from auth_service.config import Settings
from auth_service.main import create_app
from fm_common.testing.ports import free_port
from fm_common.testing.servers import AppServer
from session_service.config import Settings as SessionSettings
from session_service.main import create_app as create_session_app

SERVICE_SECRET = "test-service-secret-0123456789"
PASSWORD = "correct horse battery"


@dataclass
class System:
    """The auth service and a real session service, both over real HTTP."""

    auth_url: str
    session_url: str
    redis_url: str
    settings: Settings


@pytest.fixture
def auth_port() -> int:
    return free_port()


@pytest.fixture
def session_server(redis_url: str, auth_port: int, data_dir: Path) -> Iterator[AppServer]:
    settings = SessionSettings(
        redis_url=redis_url,
        jwks_url=f"http://127.0.0.1:{auth_port}/api/v1/auth/.well-known/jwks.json",
        data_dir=data_dir,
    )
    server = AppServer(create_session_app(settings)).start()
    yield server
    server.stop()


@pytest.fixture
def make_settings(
    redis_url: str, data_dir: Path, session_server: AppServer
) -> Callable[..., Settings]:
    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "data_dir": data_dir,
            "session_url": session_server.url,
            "bcrypt_rounds": 4,
            "service_client_secret": SERVICE_SECRET,
            # Every test registers from 127.0.0.1 (test_hardening sets its own limit).
            "registrations_per_address": 100_000,
        }
        return Settings(**(values | overrides))

    return _make


@pytest.fixture
def start_auth(auth_port: int) -> Iterator[Callable[[Settings], AppServer]]:
    servers: list[AppServer] = []

    def _start(settings: Settings) -> AppServer:
        server = AppServer(create_app(settings), port=auth_port).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture
async def client(
    make_settings: Callable[..., Settings], start_auth: Callable[[Settings], AppServer]
) -> AsyncIterator[httpx.AsyncClient]:
    server = start_auth(make_settings())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.from_url(redis_url, decode_responses=True)
    yield r
    await r.aclose()


Register = Callable[..., Any]


@pytest.fixture
def register(client: httpx.AsyncClient) -> Register:
    """`await register("alice", email=...)` -> the AuthTokenResponse body (asserts 201)."""

    async def _register(username: str = "alice", **extra: Any) -> dict[str, Any]:
        body = {"username": username, "password": PASSWORD, **extra}
        resp = await client.post("/api/v1/auth/register", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    return _register
