"""Prepared passages kept in Redis for the later slices of long work (ADR 0160, 0166).

The first slice of an evidence file or of a runbook batch prepares every passage (the
chunk texts and metadata the collection will hold); later slices read a window of them
from a Redis list instead of preparing them again (which grows with the document: ~0.8 s
a MB of markdown, every slice). Redis holds at most FM_KNOWLEDGE_SLICE_PASSAGES_MB of
them in all: the first slice reserves its size in a budget hash (`fm:knowledge:kept-
passages`, key -> "bytes:expiry") with one script, so concurrent reservations cannot
overshoot; work past the budget is not kept, and its later slices prepare their window
again from the stored file. Kept lists expire after 6 h (their budget entries with them).
"""

from __future__ import annotations

import json
import time
from typing import Any

BUDGET_KEY = "fm:knowledge:kept-passages"
TTL_SECONDS = 6 * 3600
# The most passages a later slice takes (its time usually ends it first).
SLICE_WINDOW = 256

# Frees expired reservations, then reserves ARGV[2] bytes for list ARGV[1] until
# ARGV[4] when the others' still-live reservations leave room under ARGV[5]; 1 or 0.
_RESERVE = """
local now = tonumber(ARGV[3])
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local value = fields[i + 1]
  local sep = string.find(value, ':', 1, true)
  local size = tonumber(string.sub(value, 1, sep - 1))
  local expiry = tonumber(string.sub(value, sep + 1))
  if expiry < now then
    redis.call('HDEL', KEYS[1], fields[i])
  elseif fields[i] ~= ARGV[1] then
    total = total + size
  end
end
if total + tonumber(ARGV[2]) > tonumber(ARGV[5]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[4])
return 1
"""


def keep(redis: Any, key: str, rows: list[Any], max_bytes: int, ttl: int = TTL_SECONDS) -> bool:
    """Keep `rows` (JSON-able) as the list `key` if the budget has room; whether kept."""
    encoded = [json.dumps(row) for row in rows]
    size = sum(len(r) for r in encoded)
    now = int(time.time())
    if max_bytes <= 0 or not redis.eval(
        _RESERVE, 1, BUDGET_KEY, key, size, now, now + ttl, max_bytes
    ):
        return False
    pipe = redis.pipeline()  # one transaction: a reader never sees part of the list
    pipe.delete(key)
    for at in range(0, len(encoded), 500):
        pipe.rpush(key, *encoded[at : at + 500])
    pipe.expire(key, ttl)
    pipe.execute()
    return True


def window(redis: Any, key: str, start: int, size: int) -> tuple[int, list[Any]] | None:
    """How many rows the list holds, and `size` of them from `start`; None when they
    are not kept (never, expired, Redis restarted) or unreadable."""
    pipe = redis.pipeline()
    pipe.llen(key)
    pipe.lrange(key, start, start + size - 1)
    total, raw = pipe.execute()
    if not total:
        return None
    try:
        return int(total), [json.loads(r) for r in raw]
    except (ValueError, TypeError):
        return None


def drop(redis: Any, key: str) -> None:
    pipe = redis.pipeline()
    pipe.delete(key)
    pipe.hdel(BUDGET_KEY, key)
    pipe.execute()
