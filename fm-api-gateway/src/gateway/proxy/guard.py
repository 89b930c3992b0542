"""Token verification with a per-token cache, and the Redis round trip of every request.

A token's signature and claims never change, so a verified token is cached (bounded LRU,
until its `exp`). Revocation can happen at any moment, so the deny-list is read from
Redis on every request, in the same round trip as the rate-limit counter.
"""

from __future__ import annotations

import collections
import time

from fm_common.auth import (
    Principal,
    TokenVerifier,
    deny_key,
    revoked_before_key,
    revoked_by_watermark,
)
from fm_common.errors import RateLimited, Unauthorized, Unavailable
from gateway.proxy.redis_pipe import RedisDown, RedisPipe, RedisReplyError, encode

RATE_PREFIX = "fm:gateway:rl:"


class TokenCache:
    """Verified principals by token string, evicted least-recently-used, dropped at exp."""

    def __init__(self, verifier: TokenVerifier, size: int) -> None:
        self.verifier = verifier
        self.size = size
        self._cache: collections.OrderedDict[str, Principal] = collections.OrderedDict()

    async def verify(self, token: str) -> Principal:
        cache = self._cache
        principal = cache.get(token)
        if principal is not None:
            if principal.expires_at > time.time():
                cache.move_to_end(token)
                return principal
            del cache[token]
            raise Unauthorized("The token has expired.", code="TOKEN_EXPIRED")
        principal = await self.verifier.verify(token, check_denylist=False)
        if self.size:
            cache[token] = principal
            if len(cache) > self.size:
                cache.popitem(last=False)
        return principal

    def __len__(self) -> int:
        return len(self._cache)


class Limiter:
    """Fixed-window rate limits and the jti deny-list, in one pipelined Redis round trip."""

    def __init__(self, pipe: RedisPipe, window: int, retry_after_down: int) -> None:
        self.pipe = pipe
        self.window = window
        self.retry_after_down = retry_after_down

    async def check(
        self, identity: str, limit: int, jti: str | None, principal: Principal | None = None
    ) -> None:
        """Raise 401 for a revoked token (its jti deny-listed, or issued before its user's
        sign-out watermark), 429 past the limit, 503 when Redis is down."""
        now = time.time()
        window_index = int(now // self.window)
        key = f"{RATE_PREFIX}{identity}:{window_index}"
        commands = [
            # Created with its expiry so a crash between commands never leaves a
            # counter without a TTL.
            encode("SET", key, "0", "EX", self.window + 1, "NX"),
            encode("INCR", key),
        ]
        if jti is not None:
            commands.append(encode("EXISTS", deny_key(jti)))
        if principal is not None:
            commands.append(encode("GET", revoked_before_key(principal.subject)))
        try:
            replies = await self.pipe.execute(commands)
        except RedisDown as exc:
            raise Unavailable(
                "The gateway cannot reach its store (Redis); retry later.",
                retry_after=self.retry_after_down,
            ) from exc
        for reply in replies:
            if isinstance(reply, RedisReplyError):
                raise Unavailable(
                    "The gateway's store (Redis) refused a command; retry later.",
                    retry_after=self.retry_after_down,
                )
        if jti is not None and replies[2]:
            raise Unauthorized("The token has been revoked.", code="TOKEN_REVOKED")
        if principal is not None and revoked_by_watermark(principal.issued_at, replies[-1]):
            raise Unauthorized("The token has been revoked.", code="TOKEN_REVOKED")
        if replies[1] > limit:
            retry_after = int((window_index + 1) * self.window - now) + 1
            raise RateLimited(retry_after, "Too many requests; retry after the given seconds.")
