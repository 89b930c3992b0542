"""Everything the gateway opens at start and closes at stop, shared by both of its apps."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from fm_common.auth import TokenVerifier
from fm_common.clients.base import create_http_client
from fm_common.redis import create_redis
from gateway.config import Settings
from gateway.proxy.guard import Limiter, TokenCache
from gateway.proxy.redis_pipe import RedisPipe
from gateway.proxy.upstream import Upstream


class GatewayState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http: httpx.AsyncClient | None = None
        self.redis: Any = None
        self.pipe: RedisPipe | None = None
        self.tokens: TokenCache | None = None
        self.limiter: Limiter | None = None
        self.upstreams: dict[str, Upstream] = {}
        # Small caches of the meta routes: key -> (monotonic expiry, value).
        self.cache: dict[str, tuple[float, Any]] = {}
        # The /health check in progress, shared by callers arriving meanwhile.
        self.health_running: asyncio.Future[dict[str, Any]] | None = None

    async def open(self) -> None:
        s = self.settings
        self.http = create_http_client(
            connect_timeout=s.http_connect_timeout, timeout=s.http_timeout
        )
        self.redis = create_redis(s.redis_url)
        self.pipe = RedisPipe(s.redis_url, connect_timeout=2.0, timeout=2.0)
        verifier = TokenVerifier(
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            algorithms=s.jwt_algorithms,
            jwks_url=s.effective_jwks_url,
            cache_seconds=s.jwks_cache_seconds,
            http=self.http,
        )
        self.tokens = TokenCache(verifier, s.token_cache_size)
        self.limiter = Limiter(self.pipe, s.rate_limit_window_seconds, s.retry_after_seconds)
        self.upstreams = {
            name: Upstream(
                name,
                url,
                connect_timeout=s.upstream_connect_timeout,
                response_timeout=s.upstream_timeout,
                stream_idle_timeout=s.stream_idle_timeout,
                max_idle=s.upstream_max_idle_connections,
                retry_after=s.retry_after_seconds,
            )
            for name, url in s.service_urls().items()
        }

    async def close(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.close()
        if self.pipe is not None:
            await self.pipe.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.http is not None:
            await self.http.aclose()
