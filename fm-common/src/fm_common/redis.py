"""One way to open Redis in every process."""

from __future__ import annotations

import redis.asyncio as aioredis


def create_redis(url: str, *, decode_responses: bool = True) -> aioredis.Redis:
    """An asyncio Redis client with bounded timeouts, so a down Redis fails fast (503)."""
    return aioredis.from_url(
        url,
        decode_responses=decode_responses,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        retry_on_timeout=False,
    )
