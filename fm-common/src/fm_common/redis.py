"""One way to open Redis in every process (services, the gateway, the worker).

Every client retries a command once, at once, on a new connection when its connection
was dropped (`ConnectionError`): after Redis restarts, every pooled connection is dead,
and without the retry the first command on each of them failed (a 503 per connection).
If Redis is still down, the retry's connect is refused at once and the error goes up
(the services answer 503 with Retry-After). Timeouts are not retried: a hung Redis
costs one `socket_timeout`, not two.
"""

from __future__ import annotations

from typing import Any

import redis as redis_sync
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

CONNECT_TIMEOUT = 2.0
RETRIED_ERRORS = (RedisConnectionError,)


def retry_options(*, asyncio: bool) -> dict[str, Any]:
    """redis-py options for one immediate retry on a dropped connection (see above)."""
    retry_cls = AsyncRetry if asyncio else Retry
    return {
        "retry": retry_cls(NoBackoff(), 1, supported_errors=RETRIED_ERRORS),
        "retry_on_error": list(RETRIED_ERRORS),
        "retry_on_timeout": False,
    }


def create_redis(url: str, *, decode_responses: bool = True) -> aioredis.Redis:
    """An asyncio Redis client with bounded timeouts, so a down Redis fails fast (503)."""
    return aioredis.from_url(
        url,
        decode_responses=decode_responses,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=5.0,
        health_check_interval=30,
        **retry_options(asyncio=True),
    )


def create_sync_redis(
    url: str, *, decode_responses: bool = False, socket_timeout: float = 30.0
) -> redis_sync.Redis:
    """The synchronous client (the Celery worker), with the same retry."""
    return redis_sync.Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        **retry_options(asyncio=False),
    )
