"""The Redis copy of the passages of work in slices is bounded (ADR 0166): a real Redis."""

from __future__ import annotations

import time

import redis as redis_lib

from knowledge_service.domain.ingest import kept


def _rows(n: int, size: int) -> list[list[object]]:
    return [["user_o", f"d:{i}", "x" * size, {"chunk_index": i}] for i in range(n)]


def test_work_past_the_budget_is_not_kept_until_room_is_freed(redis_url: str) -> None:
    r = redis_lib.Redis.from_url(redis_url)
    budget = 30_000
    assert kept.keep(r, "list:a", _rows(10, 1000), budget)  # ~10.5 KB
    assert kept.keep(r, "list:b", _rows(10, 1000), budget)
    assert not kept.keep(r, "list:c", _rows(10, 1000), budget)  # over 30 KB in all
    assert not r.exists("list:c")
    assert kept.window(r, "list:c", 0, 5) is None  # its slices prepare theirs again
    # A window of the kept ones, from its start.
    found = kept.window(r, "list:a", 3, 4)
    assert found is not None
    total, rows = found
    assert total == 10
    assert [row[1] for row in rows] == ["d:3", "d:4", "d:5", "d:6"]
    # Dropping one frees its share of the budget.
    kept.drop(r, "list:a")
    assert not r.exists("list:a")
    assert kept.keep(r, "list:c", _rows(10, 1000), budget)
    # Keeping a list again replaces its reservation rather than adding to it.
    assert kept.keep(r, "list:c", _rows(10, 1000), budget)
    assert sorted(r.hkeys(kept.BUDGET_KEY)) == [b"list:b", b"list:c"]


def test_an_expired_reservation_is_freed_by_the_next_one(redis_url: str) -> None:
    r = redis_lib.Redis.from_url(redis_url)
    budget = 15_000
    assert kept.keep(r, "list:old", _rows(10, 1000), budget)
    assert not kept.keep(r, "list:new", _rows(10, 1000), budget)
    # The old list expired with its TTL (its worker died and nobody dropped it).
    size = r.hget(kept.BUDGET_KEY, "list:old").split(b":")[0]
    r.hset(kept.BUDGET_KEY, "list:old", size + b":" + str(int(time.time()) - 1).encode())
    assert kept.keep(r, "list:new", _rows(10, 1000), budget)
    assert r.hkeys(kept.BUDGET_KEY) == [b"list:new"]


def test_a_zero_budget_keeps_nothing(redis_url: str) -> None:
    r = redis_lib.Redis.from_url(redis_url)
    assert not kept.keep(r, "list:z", _rows(1, 10), 0)
    assert not r.exists("list:z")
    assert not r.exists(kept.BUDGET_KEY)
