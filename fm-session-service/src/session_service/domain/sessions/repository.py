"""Every Redis access of the session service.

Keys (standalone Redis; the Lua scripts derive keys from the session id, so no cluster):
- `fm:session:<id>` hash, TTL = the session's timeout: the session itself.
- `fm:session:client:<user or "anon">:<client_id>` -> id, same TTL: resume by client.
- `fm:session:user:<user_id>` sorted set of ids scored by expiry (epoch seconds): the
  per-user index. Entries whose score has passed are pruned on every read, so the index
  stays right although Redis expires the session hashes on its own.
- `fm:session:expired:<id>` -> owner, TTL = timeout + marker time: lets a heartbeat on a
  session that expired answer SESSION_EXPIRED instead of "unknown".
Check-and-change steps run as Lua scripts, so two requests never bind one session twice
or extend a session that is being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from session_service.domain.sessions.models import ANONYMOUS, StoredSession

PREFIX = "fm:session:"
MAX_TTL_SECONDS = 480 * 60
INDEX_GRACE_SECONDS = 60


def session_key(session_id: str) -> str:
    return f"{PREFIX}{session_id}"


def client_key(user_id: str, client_id: str) -> str:
    return f"{PREFIX}client:{user_id or 'anon'}:{client_id}"


def user_index_key(user_id: str) -> str:
    return f"{PREFIX}user:{user_id}"


def marker_key(session_id: str) -> str:
    return f"{PREFIX}expired:{session_id}"


def rate_key(who: str, window: int) -> str:
    return f"{PREFIX}rl:{who}:{window}"


# Shared Lua helpers: key names must match the Python functions above.
_LUA_KEYS = """
local P = 'fm:session:'
local function ckey(owner, client)
  if owner == '' then return P .. 'client:anon:' .. client end
  return P .. 'client:' .. owner .. ':' .. client
end
"""

# Extend a session to its full timeout. ARGV: id, caller, now, marker_seconds, index_ttl.
# Returns {1, expires_at} when extended, {-1} when it expired (and was the caller's),
# {0} when unknown or someone else's.
_TOUCH = (
    _LUA_KEYS
    + """
local key = P .. ARGV[1]
local caller = ARGV[2]
local now = tonumber(ARGV[3])
local owner = redis.call('HGET', key, 'user_id')
if not owner then
  local was = redis.call('GET', P .. 'expired:' .. ARGV[1])
  if was and was == caller then return {-1} end
  return {0}
end
if owner ~= caller then return {0} end
local ttl = tonumber(redis.call('HGET', key, 'timeout_minutes')) * 60
local expires = now + ttl
redis.call('EXPIRE', key, ttl)
redis.call('HSET', key, 'last_activity_at', ARGV[3], 'expires_at', tostring(expires))
redis.call('SET', P .. 'expired:' .. ARGV[1], owner, 'EX', ttl + tonumber(ARGV[4]))
local client = redis.call('HGET', key, 'client_id')
if client and client ~= '' then
  local ck = ckey(owner, client)
  if redis.call('GET', ck) == ARGV[1] then redis.call('EXPIRE', ck, ttl) end
end
if owner ~= '' then
  redis.call('ZADD', P .. 'user:' .. owner, expires, ARGV[1])
  redis.call('EXPIRE', P .. 'user:' .. owner, tonumber(ARGV[5]))
end
return {1, tostring(expires)}
"""
)

# Bind an anonymous session to a user. ARGV: id, user, now, marker_seconds, index_ttl.
# Returns 1 when bound (or already the user's), 0 when gone or someone else's.
_BIND = (
    _LUA_KEYS
    + """
local key = P .. ARGV[1]
local user = ARGV[2]
local owner = redis.call('HGET', key, 'user_id')
if not owner then return 0 end
if owner ~= '' and owner ~= user then return 0 end
local now = tonumber(ARGV[3])
local ttl = tonumber(redis.call('HGET', key, 'timeout_minutes')) * 60
local expires = now + ttl
redis.call('HSET', key, 'user_id', user, 'last_activity_at', ARGV[3],
           'expires_at', tostring(expires))
redis.call('EXPIRE', key, ttl)
local client = redis.call('HGET', key, 'client_id')
if client and client ~= '' then
  if redis.call('GET', ckey('', client)) == ARGV[1] then redis.call('DEL', ckey('', client)) end
  redis.call('SET', ckey(user, client), ARGV[1], 'EX', ttl)
end
redis.call('SET', P .. 'expired:' .. ARGV[1], user, 'EX', ttl + tonumber(ARGV[4]))
redis.call('ZADD', P .. 'user:' .. user, expires, ARGV[1])
redis.call('EXPIRE', P .. 'user:' .. user, tonumber(ARGV[5]))
return 1
"""
)

# Delete a session of `caller`. ARGV: id, caller. Returns 1 when deleted, 0 otherwise.
_DELETE = (
    _LUA_KEYS
    + """
local key = P .. ARGV[1]
local owner = redis.call('HGET', key, 'user_id')
if not owner or owner ~= ARGV[2] then return 0 end
local client = redis.call('HGET', key, 'client_id')
if client and client ~= '' then
  local ck = ckey(owner, client)
  if redis.call('GET', ck) == ARGV[1] then redis.call('DEL', ck) end
end
redis.call('DEL', key, P .. 'expired:' .. ARGV[1])
if owner ~= '' then redis.call('ZREM', P .. 'user:' .. owner, ARGV[1]) end
return 1
"""
)


@dataclass(frozen=True, slots=True)
class TouchResult:
    """Outcome of extending a session: extended, expired (the caller's) or unknown."""

    status: str  # "extended" | "expired" | "unknown"
    expires_at: float | None = None


class SessionStore:
    def __init__(self, redis: aioredis.Redis, *, marker_seconds: int) -> None:
        self.redis = redis
        self.marker_seconds = marker_seconds
        self._touch = redis.register_script(_TOUCH)
        self._bind = redis.register_script(_BIND)
        self._delete = redis.register_script(_DELETE)

    @property
    def index_ttl(self) -> int:
        return MAX_TTL_SECONDS + INDEX_GRACE_SECONDS

    async def get(self, session_id: str) -> StoredSession | None:
        data: dict[str, Any] = await self.redis.hgetall(session_key(session_id))  # type: ignore[assignment]
        if not data or "session_id" not in data:
            return None
        return StoredSession.from_redis(data)

    async def create(self, session: StoredSession) -> None:
        """Store a new session with its indexes, atomically (MULTI/EXEC)."""
        ttl = session.ttl_seconds
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(session_key(session.session_id), mapping=session.to_redis())  # type: ignore[arg-type]
            pipe.expire(session_key(session.session_id), ttl)
            pipe.set(marker_key(session.session_id), session.user_id, ex=ttl + self.marker_seconds)
            if session.client_id:
                pipe.set(client_key(session.user_id, session.client_id), session.session_id, ex=ttl)
            if session.user_id != ANONYMOUS:
                index = user_index_key(session.user_id)
                pipe.zadd(index, {session.session_id: session.expires_at})
                pipe.expire(index, self.index_ttl)
            await pipe.execute()

    async def session_for_client(self, user_id: str, client_id: str) -> str | None:
        value = await self.redis.get(client_key(user_id, client_id))
        return str(value) if value else None

    async def touch(self, session_id: str, caller: str, now: float) -> TouchResult:
        result = await self._touch(
            args=[session_id, caller, repr(now), self.marker_seconds, self.index_ttl]
        )
        code = int(result[0])
        if code == 1:
            return TouchResult("extended", float(result[1]))
        return TouchResult("expired" if code == -1 else "unknown")

    async def bind(self, session_id: str, user_id: str, now: float) -> bool:
        result = await self._bind(
            args=[session_id, user_id, repr(now), self.marker_seconds, self.index_ttl]
        )
        return int(result) == 1

    async def delete(self, session_id: str, caller: str) -> bool:
        return int(await self._delete(args=[session_id, caller])) == 1

    async def live_ids_of(self, user_id: str, now: float) -> list[str]:
        """Ids in the user's index that have not expired (expired entries are pruned)."""
        index = user_index_key(user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(index, "-inf", now)
            pipe.zrange(index, 0, -1)
            _, ids = await pipe.execute()
        return [str(i) for i in ids]

    async def many(self, user_id: str, session_ids: list[str]) -> list[StoredSession]:
        """The sessions among `session_ids` that still exist; stale index entries go."""
        if not session_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.hgetall(session_key(sid))
            rows = await pipe.execute()
        found: list[StoredSession] = []
        stale: list[str] = []
        for sid, data in zip(session_ids, rows, strict=True):
            if data and data.get("user_id") == user_id:
                found.append(StoredSession.from_redis(data))
            else:
                stale.append(sid)
        if stale:
            await self.redis.zrem(user_index_key(user_id), *stale)
        return found

    async def count_creation(
        self, address: str, window_seconds: int, now: float
    ) -> tuple[int, int]:
        """Count one creation from `address`; returns (count in window, seconds left)."""
        window = int(now // window_seconds)
        key = rate_key(address, window)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_seconds + 1)
            count, _ = await pipe.execute()
        left = int((window + 1) * window_seconds - now) + 1
        return int(count), left
