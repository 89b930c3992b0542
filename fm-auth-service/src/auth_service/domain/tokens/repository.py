"""Token state in Redis: refresh families, live access tokens, the jti deny-list.

Keys:
- `fm:auth:family:<fam>` hash {user_id, sid, current_jti, revoked}, TTL = refresh TTL
  (renewed on each rotation): one login's chain of refresh tokens.
- `fm:auth:family:<fam>:access` sorted set jti -> exp: access tokens issued in it.
- `fm:auth:user:<uid>:access` sorted set jti -> exp: the user's live access tokens.
- `fm:auth:user:<uid>:families` set of family ids; `fm:auth:sid:<sid>:families` likewise
  per session. Stale members (expired families, passed exps) are pruned when read.
- `fm:auth:denied-jti:<jti>` (fm_common.auth.deny_key) until the token's exp: the
  deny-list every service checks.
- `fm:auth:revoked-before:<uid>` (fm_common.auth.revoked_before_key), the Unix second of
  the user's last account-wide sign-out, for the refresh TTL: every verifier refuses the
  user's tokens issued in an earlier second.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from fm_common.auth import deny_key, revoked_before_key

PREFIX = "fm:auth:"
# Deny-list entries outlive the token by the verifiers' clock leeway.
DENY_MARGIN_SECONDS = 10

# Rotate a family's refresh token: ARGV fam, presented jti, new jti, ttl.
# 1 rotated; 0 unknown (expired); -1 reuse of an old token; -2 family revoked.
_ROTATE = """
local key = 'fm:auth:family:' .. ARGV[1]
local current = redis.call('HGET', key, 'current_jti')
if not current then return 0 end
if redis.call('HGET', key, 'revoked') == '1' then return -2 end
if current ~= ARGV[2] then return -1 end
redis.call('HSET', key, 'current_jti', ARGV[3])
redis.call('EXPIRE', key, tonumber(ARGV[4]))
redis.call('EXPIRE', key .. ':access', tonumber(ARGV[4]))
return 1
"""


def family_key(family_id: str) -> str:
    return f"{PREFIX}family:{family_id}"


def family_access_key(family_id: str) -> str:
    return f"{PREFIX}family:{family_id}:access"


def user_access_key(user_id: str) -> str:
    return f"{PREFIX}user:{user_id}:access"


def user_families_key(user_id: str) -> str:
    return f"{PREFIX}user:{user_id}:families"


def session_families_key(session_id: str) -> str:
    return f"{PREFIX}sid:{session_id}:families"


class TokenStore:
    def __init__(self, redis: aioredis.Redis, *, refresh_ttl: int, access_ttl: int) -> None:
        self.redis = redis
        self.refresh_ttl = refresh_ttl
        self.access_ttl = access_ttl
        self._rotate = redis.register_script(_ROTATE)

    async def open_family(
        self, *, family_id: str, user_id: str, session_id: str, refresh_jti: str
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                family_key(family_id),
                mapping={
                    "user_id": user_id,
                    "sid": session_id,
                    "current_jti": refresh_jti,
                    "revoked": "0",
                },
            )
            pipe.expire(family_key(family_id), self.refresh_ttl)
            pipe.sadd(user_families_key(user_id), family_id)
            pipe.expire(user_families_key(user_id), self.refresh_ttl)
            pipe.sadd(session_families_key(session_id), family_id)
            pipe.expire(session_families_key(session_id), self.refresh_ttl)
            await pipe.execute()

    async def record_access(
        self, *, user_id: str, family_id: str, jti: str, expires_at: int
    ) -> None:
        """Remember a live access token so a logout or a theft alarm can revoke it."""
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (user_access_key(user_id), family_access_key(family_id)):
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zadd(key, {jti: expires_at})
            pipe.expire(user_access_key(user_id), self.access_ttl + DENY_MARGIN_SECONDS)
            pipe.expire(family_access_key(family_id), self.refresh_ttl)
            await pipe.execute()

    async def rotate(self, family_id: str, presented_jti: str, new_jti: str) -> int:
        return int(await self._rotate(args=[family_id, presented_jti, new_jti, self.refresh_ttl]))

    async def family_owner(self, family_id: str) -> str | None:
        value = await self.redis.hget(family_key(family_id), "user_id")
        return str(value) if value else None

    async def deny(self, jtis: dict[str, float]) -> int:
        """Deny-list each jti until its expiry; returns how many were still live."""
        now = time.time()
        live = {jti: exp for jti, exp in jtis.items() if exp > now}
        if not live:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for jti, exp in live.items():
                pipe.set(deny_key(jti), "1", ex=int(exp - now) + DENY_MARGIN_SECONDS)
            await pipe.execute()
        return len(live)

    async def revoke_family(self, family_id: str) -> tuple[bool, dict[str, float]]:
        """Mark a family revoked; returns (was it live, its live access jtis -> exp)."""
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(family_key(family_id), "revoked")
            pipe.hset(family_key(family_id), "revoked", "1")
            pipe.zrangebyscore(family_access_key(family_id), now, "+inf", withscores=True)
            results = await pipe.execute()
        was, access = results[0], results[2]
        # HSET on a missing key created it; give it a lifetime so it cannot linger.
        if was is None:
            await self.redis.expire(family_key(family_id), self.refresh_ttl)
        return was == "0", {str(j): float(s) for j, s in access}

    async def families_of_session(self, session_id: str) -> list[str]:
        return [str(f) for f in await self.redis.smembers(session_families_key(session_id))]

    async def families_of_user(self, user_id: str) -> list[str]:
        return [str(f) for f in await self.redis.smembers(user_families_key(user_id))]

    async def live_access_of_user(self, user_id: str) -> dict[str, float]:
        now = time.time()
        rows: list[tuple[str, float]] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            user_access_key(user_id), now, "+inf", withscores=True
        )
        return {str(j): float(s) for j, s in rows}

    async def set_revoked_before(self, user_id: str, at: int) -> None:
        """The account-wide sign-out watermark; it lives as long as any token could."""
        ttl = self.refresh_ttl + DENY_MARGIN_SECONDS
        await self.redis.set(revoked_before_key(user_id), str(at), ex=ttl)

    async def revoked_before(self, user_id: str) -> str | None:
        value = await self.redis.get(revoked_before_key(user_id))
        return str(value) if value is not None else None

    async def forget_user_families(self, user_id: str, family_ids: list[str]) -> None:
        if family_ids:
            await self.redis.srem(user_families_key(user_id), *family_ids)
