"""Redis restarts under running clients: the first request after it is back succeeds.

A real redis-server on a fixed port is stopped and started again by the test, under a
service app served by real uvicorn (the pooled connections all die with the server).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from fastapi import FastAPI

from fm_common.app import create_service_app
from fm_common.auth import CurrentPrincipal
from fm_common.jobs import enqueue
from fm_common.redis import create_redis, create_sync_redis
from fm_common.settings import BaseServiceSettings
from fm_common.testing.redis_server import RedisServer
from fm_common.testing.servers import AppServer
from fm_common.testing.tokens import TokenIssuer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone (it is restarted)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def restart(server: RedisServer) -> None:
    server.stop()
    server.start()


async def test_async_client_survives_a_restart(own_redis: RedisServer):
    client = create_redis(own_redis.url)
    try:
        # Several pooled connections, all of which die with the server.
        await asyncio.gather(*(client.set(f"k{i}", "v") for i in range(5)))
        restart(own_redis)
        assert await client.set("after", "1") is True
        assert await client.get("after") == "1"
    finally:
        await client.aclose()


async def test_async_client_fails_fast_while_down(own_redis: RedisServer):
    import redis.exceptions

    client = create_redis(own_redis.url)
    try:
        await client.ping()
        own_redis.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()
        own_redis.start()
        assert await client.ping() is True
    finally:
        await client.aclose()


def test_sync_client_survives_a_restart(own_redis: RedisServer):
    client = create_sync_redis(own_redis.url)
    try:
        client.set("before", "1")
        restart(own_redis)
        assert client.set("after", "1") is True
        assert client.get("after") == b"1"
    finally:
        client.close()


def test_job_producer_survives_a_restart(own_redis: RedisServer):
    import redis

    first = enqueue(own_redis.url, "demo.task", queue="maintenance", kwargs={"n": 1})
    restart(own_redis)
    second = enqueue(own_redis.url, "demo.task", queue="maintenance", kwargs={"n": 2})
    assert first != second
    client = redis.Redis.from_url(own_redis.url)
    assert client.llen("maintenance") == 1  # the first was lost with the unpersisted server
    client.close()


class DemoSettings(BaseServiceSettings):
    service_name: ClassVar[str] = "demo"


def build_demo_app(redis_url: str, issuer: TokenIssuer) -> FastAPI:
    """A service app whose route checks the token (the deny-list read is a Redis call)."""
    app = create_service_app(
        DemoSettings(redis_url=redis_url, jwks_url=issuer.jwks_url, log_format="json"),
        title="demo",
    )

    @app.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user_id": principal.user_id}

    return app


@pytest.fixture
def served_demo(own_redis: RedisServer, token_issuer: TokenIssuer) -> Iterator[str]:
    server = AppServer(build_demo_app(own_redis.url, token_issuer)).start()
    yield server.url
    server.stop()


async def test_service_answers_the_first_request_after_redis_returns(
    served_demo: str,
    own_redis: RedisServer,
    token_issuer: TokenIssuer,
    caplog: pytest.LogCaptureFixture,
):
    headers = {"Authorization": f"Bearer {token_issuer.token('user-1')}"}
    async with httpx.AsyncClient(base_url=served_demo, timeout=10) as client:
        # Concurrent requests: several pooled Redis connections (the deny-list check).
        warm = await asyncio.gather(*(client.get("/whoami", headers=headers) for _ in range(6)))
        assert [r.status_code for r in warm] == [200] * 6

        restart(own_redis)
        after = await asyncio.gather(*(client.get("/whoami", headers=headers) for _ in range(6)))
        assert [r.status_code for r in after] == [200] * 6
        assert after[0].json() == {"user_id": "user-1"}


async def test_redis_down_is_a_handled_503_with_retry_after(
    served_demo: str,
    own_redis: RedisServer,
    token_issuer: TokenIssuer,
    caplog: pytest.LogCaptureFixture,
):
    headers = {"Authorization": f"Bearer {token_issuer.token('user-1')}"}
    async with httpx.AsyncClient(base_url=served_demo, timeout=10) as client:
        assert (await client.get("/whoami", headers=headers)).status_code == 200
        own_redis.stop()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            down = await client.get("/whoami", headers=headers)
            # The same keep-alive connection still answers: the server did not drop it.
            again = await client.get("/whoami", headers=headers)
        assert down.status_code == 503
        assert down.json()["code"] == "SERVICE_UNAVAILABLE"
        assert int(down.headers["retry-after"]) >= 1
        assert again.status_code == 503
        logged = caplog.text
        assert "Exception in ASGI application" not in logged
        assert "Traceback" not in logged
        assert "dependency.unavailable" in logged
        own_redis.start()
        assert (await client.get("/whoami", headers=headers)).status_code == 200
