"""Login throttling: failed logins counted per account and per client address in Redis."""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis
import structlog

from fm_common.errors import RateLimited

log = structlog.get_logger(__name__)

PREFIX = "fm:auth:login-failures:"


def _key(kind: str, value: str) -> str:
    # Hashed, so an address or a typed username never appears as a Redis key.
    return f"{PREFIX}{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


class LoginThrottle:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        max_per_account: int,
        max_per_address: int,
        window_seconds: int,
    ) -> None:
        self.redis = redis
        self.max_per_account = max_per_account
        self.max_per_address = max_per_address
        self.window = window_seconds

    async def check(self, account: str, address: str) -> None:
        """429 with Retry-After when the account or the address has failed too often."""
        keys = (_key("account", account), _key("address", address))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            acc_count, acc_ttl, addr_count, addr_ttl = await pipe.execute()
        waits = []
        if acc_count is not None and int(acc_count) >= self.max_per_account:
            waits.append(acc_ttl)
        if addr_count is not None and int(addr_count) >= self.max_per_address:
            waits.append(addr_ttl)
        if waits:
            retry = max(max(int(w) for w in waits), 1)
            log.warning("auth.login_throttled", retry_after=retry)
            raise RateLimited(retry, "Too many failed logins; retry later.", code="LOGIN_THROTTLED")

    async def record_failure(self, account: str, address: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (_key("account", account), _key("address", address)):
                pipe.incr(key)
                # The window starts at the first failure (NX) and is not pushed on.
                pipe.expire(key, self.window, nx=True)
            await pipe.execute()

    async def clear_account(self, account: str) -> None:
        await self.redis.delete(_key("account", account))


REGISTRATIONS = "fm:auth:registrations:address:"


class RegistrationLimit:
    """Accounts registered per client address in a window (issue 16 item 8: 150 accounts
    from one address in 65 s). Counted on success; checked before the work."""

    def __init__(self, redis: aioredis.Redis, *, max_per_address: int, window_seconds: int):
        self.redis = redis
        self.max = max_per_address
        self.window = window_seconds

    def _key(self, address: str) -> str:
        return REGISTRATIONS + hashlib.sha256(address.encode()).hexdigest()[:32]

    async def check(self, address: str) -> None:
        """429 REGISTRATION_THROTTLED with Retry-After once the address has its quota."""
        key = self._key(address)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        if count is not None and int(count) >= self.max:
            retry = max(int(ttl), 1)
            log.warning("auth.registration_throttled", retry_after=retry)
            raise RateLimited(
                retry,
                "Too many accounts were registered from this address; retry later.",
                code="REGISTRATION_THROTTLED",
            )

    async def record(self, address: str) -> None:
        key = self._key(address)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window, nx=True)
            await pipe.execute()
