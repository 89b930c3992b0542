"""In-flight tracking: work a dead worker held is redone, never silently dropped.

Each running task has an entry in the Redis hash `fm:worker:inflight` (its name, queue,
kwargs, worker, attempts and heartbeat). The entry goes when the task ends. When a
worker starts it re-sends the entries it held (it was killed mid-way); `jobs.reap_stale`
re-sends entries whose heartbeat went quiet, and gives up (records the failure) after
`max_attempts`, so a file that kills its worker every time ends `failed`.

Long work runs in slices (ADR 0160): a slice that hands the rest over records the next
slice's entry (`requeued`) before it sends it, and marks itself done (`fm:worker:slice-
done:<track id>`) so that, redelivered, it neither redoes its work nor sends the next
slice twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("worker.tracking")

INFLIGHT_KEY = "fm:worker:inflight"
SLICE_DONE_KEY = "fm:worker:slice-done:{}"


@dataclass
class InFlight:
    track_id: str
    task: str
    queue: str
    kwargs: dict[str, Any]
    hostname: str | None = None
    state: str = "running"  # running | requeued
    attempts: int = 0
    # The priority its message came with (its owner's rank, ADR 0136), kept on a resend.
    priority: int | None = None
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.time)

    def dump(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def load(cls, raw: bytes | str) -> InFlight:
        return cls(**json.loads(raw))


def get(redis: Any, track_id: str) -> InFlight | None:
    raw = redis.hget(INFLIGHT_KEY, track_id)
    return None if raw is None else InFlight.load(raw)


def begin(
    redis: Any,
    track_id: str,
    task: str,
    queue: str,
    kwargs: dict[str, Any],
    hostname: str,
    priority: int | None = None,
) -> InFlight:
    """Record a run starting; attempts count across redeliveries of the same work."""
    previous = get(redis, track_id)
    entry = InFlight(
        track_id=track_id,
        task=task,
        queue=queue,
        kwargs=kwargs,
        hostname=hostname,
        attempts=(previous.attempts if previous else 0) + 1,
        priority=priority,
    )
    redis.hset(INFLIGHT_KEY, track_id, entry.dump())
    return entry


def record(redis: Any, entry: InFlight) -> None:
    redis.hset(INFLIGHT_KEY, entry.track_id, entry.dump())


def heartbeat(redis: Any, entry: InFlight) -> None:
    entry.heartbeat = time.time()
    redis.hset(INFLIGHT_KEY, entry.track_id, entry.dump())


def park(redis: Any, entry: InFlight) -> None:
    """A retry was scheduled: keep the attempts, but it is not running anywhere."""
    entry.state, entry.hostname, entry.heartbeat = "requeued", None, time.time()
    redis.hset(INFLIGHT_KEY, entry.track_id, entry.dump())


def end(redis: Any, track_id: str) -> None:
    redis.hdel(INFLIGHT_KEY, track_id)


def all_entries(redis: Any) -> list[InFlight]:
    out = []
    for raw in redis.hvals(INFLIGHT_KEY):
        try:
            out.append(InFlight.load(raw))
        except (ValueError, TypeError):
            continue
    return out


def resend(app: Any, redis: Any, entry: InFlight) -> None:
    entry.state, entry.hostname, entry.heartbeat = "requeued", None, time.time()
    redis.hset(INFLIGHT_KEY, entry.track_id, entry.dump())
    _send(app, entry)


def _send(app: Any, entry: InFlight) -> None:
    # ignore_result: otherwise the worker's app subscribes to a result channel per send.
    app.send_task(
        entry.task,
        kwargs=entry.kwargs,
        queue=entry.queue,
        task_id=entry.track_id,
        priority=entry.priority,
        ignore_result=True,
    )


def slice_done(redis: Any, track_id: str) -> bool:
    """Whether this slice already handed the rest of its work over (a redelivery)."""
    return bool(redis.exists(SLICE_DONE_KEY.format(track_id)))


def hand_over(app: Any, redis: Any, done: str, following: InFlight, keep: int) -> bool:
    """Slice `done` ended: send the next one (`following`), once.

    The next slice's entry is recorded first (if a delivery of it is not already
    running), so a send that never happens is re-sent by `reap`; then this slice is
    marked done (kept `keep` seconds); only the run that marks it sends. False when an
    earlier delivery of this slice had already handed over."""
    following.state, following.hostname = "requeued", None
    redis.hsetnx(INFLIGHT_KEY, following.track_id, following.dump())
    if not redis.set(SLICE_DONE_KEY.format(done), "1", nx=True, ex=keep):
        return False
    _send(app, following)
    return True


def recover_inflight(app: Any, redis: Any, hostname: str) -> int:
    """Re-send what `hostname` was running when it died; returns how many."""
    count = 0
    for entry in all_entries(redis):
        if entry.state == "running" and entry.hostname == hostname:
            log.warning("worker.recovering", task=entry.task, track_id=entry.track_id)
            resend(app, redis, entry)
            count += 1
    return count


def reap(
    app: Any,
    redis: Any,
    *,
    stale_after: float,
    max_attempts: int,
    give_up: Callable[[InFlight, str], None],
) -> dict[str, int]:
    """Re-send in-flight work that went quiet; give up on work tried `max_attempts` times."""
    now = time.time()
    resent = failed = 0
    for entry in all_entries(redis):
        if now - entry.heartbeat < stale_after:
            continue
        if entry.attempts >= max_attempts:
            give_up(entry, f"The job was lost {entry.attempts} times (its worker died).")
            end(redis, entry.track_id)
            failed += 1
        else:
            log.warning("worker.reaping", task=entry.task, track_id=entry.track_id)
            resend(app, redis, entry)
            resent += 1
    return {"resent": resent, "failed": failed}
