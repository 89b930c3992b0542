"""Fairness between users' turns (issue 16 item 5: three 1 MB pasted turns of one user
slowed another user's small turn from 0.07 s to 15.8 s).

Turns answered in the request: a counter per user in Redis
(`fm:agent:turns-active:<user>`), shared by every agent process: a turn takes a slot
before any work and gives it back when it ends. Over the cap: 429 TOO_MANY_TURNS with
Retry-After, before the provider is called. The key expires after the turn deadline, so a
process that died holding slots cannot lock a user out.

Queued turns (`Prefer: respond-async`, or load shedding): a second counter per user
(`fm:agent:turns-queued:<user>`) gives each queued turn its rank among the owner's turns
still waiting, sent as its Celery priority (ADR 0136), so the worker takes one user's
many queued turns round-robin with other users' turns; the worker counts a turn out when
it starts it. The counter only orders the queue: a count left wrong by a crash costs at
most its owner's place until the key expires.
"""

from __future__ import annotations

from typing import Any

from fm_common.errors import RateLimited

PREFIX = "fm:agent:turns-active:"
QUEUED_PREFIX = "fm:agent:turns-queued:"
QUEUED_TTL_SECONDS = 3600


def _key(user_id: str) -> str:
    return PREFIX + user_id


async def take_turn_slot(redis: Any, user_id: str, cap: int, ttl_seconds: int) -> None:
    """Take one of the user's `cap` slots, or 429 TOO_MANY_TURNS."""
    key = _key(user_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, ttl_seconds)
        count, _ = await pipe.execute()
    if int(count) > cap:
        await redis.decr(key)
        raise RateLimited(
            2,
            f"You already have {cap} turns running; wait for one to finish.",
            code="TOO_MANY_TURNS",
        )


async def give_turn_slot(redis: Any, user_id: str) -> None:
    key = _key(user_id)
    left = await redis.decr(key)
    if int(left) <= 0:
        await redis.delete(key)


async def queued_turn_rank(redis: Any, user_id: str) -> int:
    """Count a turn of the user into the queue; its rank among their queued turns."""
    key = QUEUED_PREFIX + user_id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, QUEUED_TTL_SECONDS)
        count, _ = await pipe.execute()
    return max(0, int(count) - 1)


async def turn_left_queue(redis: Any, user_id: str) -> None:
    """Count a turn of the user out of the queue (started, or never sent)."""
    key = QUEUED_PREFIX + user_id
    if int(await redis.decr(key)) <= 0:
        await redis.delete(key)
