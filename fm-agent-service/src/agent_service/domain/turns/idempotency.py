"""Idempotency-Key for turns: a retried turn is answered once and stored once.

A record `fm:agent:idem:<user>:<sha(key)>` is claimed with SET NX (`pending`) by the
first request; a concurrent duplicate waits for it to finish and gets the same answer.
The key also derives the case service's `turn_key`, so even a lost record never stores a
turn twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from fm_common.errors import Conflict, Unprocessable

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,255}$")
PENDING_TTL = 600


@dataclass
class Replay:
    status: int
    body: Any
    headers: dict[str, str]


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not KEY_RE.match(key):
        raise Unprocessable(
            "Idempotency-Key must be 8-255 characters of A-Z, a-z, 0-9, '_' or '-'.",
            code="INVALID_IDEMPOTENCY_KEY",
        )
    return key


def turn_key(user_id: str, key: str) -> str:
    return "idem-" + hashlib.sha256(f"{user_id}:{key}".encode()).hexdigest()[:48]


class IdempotencyStore:
    def __init__(self, redis: Any, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl = ttl_seconds

    @staticmethod
    def _key(user_id: str, key: str) -> str:
        return f"fm:agent:idem:{user_id}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"

    async def begin(
        self, user_id: str, key: str, fingerprint: str, wait_seconds: float
    ) -> Replay | None:
        """None when this request owns the key; the first answer when it is a repeat."""
        rkey = self._key(user_id, key)
        pending = json.dumps({"state": "pending", "fp": fingerprint})
        if await self.redis.set(rkey, pending, nx=True, ex=PENDING_TTL):
            return None
        deadline = time.monotonic() + wait_seconds
        while True:
            raw = await self.redis.get(rkey)
            if raw is None:  # the first attempt failed and let go: this one runs
                if await self.redis.set(rkey, pending, nx=True, ex=PENDING_TTL):
                    return None
                continue
            record = json.loads(raw)
            if record.get("fp") != fingerprint:
                raise Conflict(
                    "This Idempotency-Key was already used for a different request.",
                    code="IDEMPOTENCY_KEY_REUSED",
                )
            if record["state"] == "done":
                return Replay(record["status"], record["body"], record.get("headers", {}))
            if time.monotonic() > deadline:
                raise Conflict(
                    "A turn with this Idempotency-Key is still being answered; retry shortly.",
                    code="IDEMPOTENCY_IN_PROGRESS",
                    headers={"Retry-After": "2"},
                )
            await asyncio.sleep(0.05)

    async def finish(
        self,
        user_id: str,
        key: str,
        fingerprint: str,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        record = {
            "state": "done",
            "fp": fingerprint,
            "status": status,
            "body": body,
            "headers": headers or {},
        }
        await self.redis.set(self._key(user_id, key), json.dumps(record), ex=self.ttl)

    async def release(self, user_id: str, key: str) -> None:
        """Let a retry run again (the first attempt failed without storing an answer)."""
        await self.redis.delete(self._key(user_id, key))
