"""A gateway whose Redis restarts: the first request after Redis is back succeeds
(issue 12 item 4, issue 16 item 9), and while Redis is down the answer is 503 with
Retry-After, never a hang or a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_testkit import ServerThread, gateway_settings

from fm_common.testing.redis_server import RedisServer
from fm_common.testing.tokens import TokenIssuer
from gateway.main import create_app


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def gateway(
    own_redis: RedisServer,
    upstreams: dict[str, ServerThread],
    token_issuer: TokenIssuer,
    dead_url: str,
) -> Iterator[str]:
    settings = gateway_settings(upstreams, own_redis.url, token_issuer, dead_url)
    server = ServerThread(create_app(settings)).start()
    yield server.url
    server.stop()


async def test_first_requests_after_redis_restarts_succeed(
    gateway: str, own_redis: RedisServer, token_issuer: TokenIssuer
):
    headers = {"Authorization": f"Bearer {token_issuer.token('user-1')}"}
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
        assert (await client.get("/api/v1/cases", headers=headers)).status_code == 200
        assert (await client.get("/ready")).status_code == 200

        own_redis.stop()  # a restart no request sees: every pooled connection is dead
        own_redis.start()
        assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/api/v1/cases", headers=headers)).status_code == 200

        own_redis.stop()
        down = await client.get("/api/v1/cases", headers=headers)
        assert down.status_code == 503
        assert int(down.headers["retry-after"]) >= 1
        assert (await client.get("/ready")).status_code == 503

        own_redis.start()
        first = await client.get("/api/v1/cases", headers=headers)
        assert first.status_code == 200
        assert first.json()["service"] == "case"
        assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/api/v1/auth/config")).status_code == 200
