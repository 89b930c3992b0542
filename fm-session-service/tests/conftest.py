from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from fm_common.testing.tokens import TokenIssuer
from session_service.config import Settings
from session_service.main import create_app


@pytest.fixture
def make_settings(redis_url: str, token_issuer: TokenIssuer, data_dir) -> Callable[..., Settings]:
    def _make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "redis_url": redis_url,
            "jwks_url": token_issuer.jwks_url,
            "data_dir": data_dir,
        }
        return Settings(**(values | overrides))

    return _make


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://session") as c:
            yield c


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.from_url(redis_url, decode_responses=True)
    yield r
    await r.aclose()
