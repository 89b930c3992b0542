"""In-flight tracking against a real Redis: redo after a crash, give up after N attempts."""

from __future__ import annotations

import time

import redis as redis_lib

from job_worker import tracking
from job_worker.base import backoff, is_transient


class Sender:
    """Records what would be sent to the broker (the Celery app's send_task)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, str, str]] = []

    def send_task(self, name, kwargs, queue, task_id, ignore_result, priority=None):  # type: ignore[no-untyped-def]
        assert ignore_result is True  # no result channel subscribed per send
        self.sent.append((name, kwargs, queue, task_id))


def test_attempts_count_across_redeliveries(redis_url: str) -> None:
    r = redis_lib.Redis.from_url(redis_url)
    first = tracking.begin(r, "job-1", "knowledge.ingest_document", "ingest", {"a": 1}, "w@h")
    again = tracking.begin(r, "job-1", "knowledge.ingest_document", "ingest", {"a": 1}, "w@h")
    assert (first.attempts, again.attempts) == (1, 2)
    tracking.end(r, "job-1")
    assert tracking.get(r, "job-1") is None


def test_stale_work_is_resent_then_given_up(redis_url: str) -> None:
    r = redis_lib.Redis.from_url(redis_url)
    sender = Sender()
    given_up: list[tuple[str, str]] = []
    entry = tracking.begin(r, "job-2", "knowledge.ingest_document", "ingest", {"d": "x"}, "w@h")
    fresh = tracking.begin(r, "job-3", "knowledge.ingest_document", "ingest", {"d": "y"}, "w@h")
    entry.heartbeat = time.time() - 100
    r.hset(tracking.INFLIGHT_KEY, entry.track_id, entry.dump())

    def give_up(e, reason):  # type: ignore[no-untyped-def]
        given_up.append((e.track_id, reason))

    result = tracking.reap(sender, r, stale_after=50, max_attempts=2, give_up=give_up)
    assert result == {"resent": 1, "failed": 0}
    assert sender.sent == [("knowledge.ingest_document", {"d": "x"}, "ingest", "job-2")]
    assert tracking.get(r, fresh.track_id).state == "running"
    # Redelivered, dies again, goes quiet again: the second attempt is the last.
    again = tracking.begin(r, "job-2", "knowledge.ingest_document", "ingest", {"d": "x"}, "w@h")
    again.heartbeat = time.time() - 100
    r.hset(tracking.INFLIGHT_KEY, again.track_id, again.dump())
    result = tracking.reap(sender, r, stale_after=50, max_attempts=2, give_up=give_up)
    assert result == {"resent": 0, "failed": 1}
    assert given_up
    assert given_up[0][0] == "job-2"
    assert tracking.get(r, "job-2") is None


def test_transient_errors_are_told_apart() -> None:
    import httpx
    import redis.exceptions

    from fm_common.errors import Unavailable

    assert is_transient(Unavailable())
    assert is_transient(redis.exceptions.ConnectionError())
    assert is_transient(httpx.ConnectError("down"))
    assert not is_transient(ValueError("bad input"))
    assert not is_transient(KeyError("bug"))


def test_backoff_grows_and_is_capped() -> None:
    assert backoff(0, 300) < backoff(4, 300)
    assert backoff(20, 60) <= 60 * 1.25
