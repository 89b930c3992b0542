"""What waits in a Celery queue on Redis, in the order the worker takes it."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from fm_common.jobs import FAIR_PRIORITY_STEPS

# kombu's Redis transport: one list per priority step, `<queue>\x06\x16<step>` (step 0
# is the queue's own name); LPUSHed, and BRPOPed priority 0 first.
_SEP = "\x06\x16"


def queued(redis_url: str, queue: str) -> list[dict[str, Any]]:
    """The queue's messages as `{task, id, kwargs}`, in the worker's order."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw: list[bytes | str] = []
        for step in FAIR_PRIORITY_STEPS:
            key = queue if step == 0 else f"{queue}{_SEP}{step}"
            raw += reversed(client.lrange(key, 0, -1))
    finally:
        client.close()
    out = []
    for item in raw:
        message = json.loads(item)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        headers = message["headers"]
        out.append({"task": headers["task"], "id": headers["id"], "kwargs": kwargs})
    return out
