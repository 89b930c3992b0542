"""Background jobs: the job store the `.../jobs/{id}` routes read, and enqueueing.

A job record lives in Redis (`fm:job:<id>`, kept `JOB_TTL_SECONDS`) with its kind, owner,
status (queued -> running -> completed | failed), progress, attempts, error and result.
Services create the record and enqueue the Celery task by name (after their database
commit); the worker updates the record as the task runs. Both the asyncio services and
the synchronous Celery worker use the same layout (`JobStore` / `SyncJobStore`).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "completed", "failed"]
SETTLED: frozenset[JobStatus] = frozenset({"completed", "failed"})
JOB_TTL_SECONDS = 7 * 24 * 3600
QUEUES = ("ingest", "agent", "maintenance")

# Fair ordering across users (issue 16 item 5): a task is sent with the priority of its
# rank among its owner's queued work of that kind (0 for the first, 1 for the second,
# ..., capped at the last step), and the worker takes priority 0 first (kombu's Redis
# transport keeps one list per step and BRPOPs them in order). A user with 30 files
# queued no longer holds the next user's first file behind all of them: work is served
# round-robin by rank, each user's own in order. ADR 0136.
FAIR_PRIORITY_STEPS = tuple(range(10))


def fair_priority(rank: int) -> int:
    """The priority of a task that has `rank` of its owner's tasks queued before it."""
    return max(0, min(rank, FAIR_PRIORITY_STEPS[-1]))


def broker_transport_options(visibility_timeout: int) -> dict[str, Any]:
    """The broker options every producer and the worker share: the priority steps must
    be the same on both sides, or a message lands in a list nobody reads."""
    return {"visibility_timeout": visibility_timeout, "priority_steps": list(FAIR_PRIORITY_STEPS)}


def job_key(job_id: str) -> str:
    return f"fm:job:{job_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class JobError(BaseModel):
    message: str
    code: str | None = None


class JobRecord(BaseModel):
    job_id: str
    kind: str
    owner_id: str
    status: JobStatus = "queued"
    resource_id: str | None = None
    progress: float = 0.0
    attempts: int = 0
    error: JobError | None = None
    result: Any = None
    payload: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=_now)
    updated_at: str = Field(default_factory=_now)


def new_job(kind: str, owner_id: str, **fields: Any) -> JobRecord:
    return JobRecord(
        job_id=fields.pop("job_id", None) or str(uuid.uuid4()),
        kind=kind,
        owner_id=owner_id,
        **fields,
    )


def _apply(record: JobRecord, fields: dict[str, Any]) -> JobRecord:
    data = record.model_dump()
    data.update(fields)
    data["updated_at"] = _now()
    return JobRecord.model_validate(data)


class JobStore:
    """Async job store (services)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def save(self, record: JobRecord) -> JobRecord:
        await self.redis.set(job_key(record.job_id), record.model_dump_json(), ex=JOB_TTL_SECONDS)
        return record

    async def create(self, kind: str, owner_id: str, **fields: Any) -> JobRecord:
        return await self.save(new_job(kind, owner_id, **fields))

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.get(job_key(job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    async def get_owned(self, job_id: str, owner_id: str) -> JobRecord | None:
        """The job when it belongs to `owner_id`; None otherwise (callers answer 404)."""
        record = await self.get(job_id)
        return record if record is not None and record.owner_id == owner_id else None

    async def update(self, job_id: str, **fields: Any) -> JobRecord | None:
        record = await self.get(job_id)
        if record is None:
            return None
        return await self.save(_apply(record, fields))


class SyncJobStore:
    """Synchronous job store (the Celery worker)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def save(self, record: JobRecord) -> JobRecord:
        self.redis.set(job_key(record.job_id), record.model_dump_json(), ex=JOB_TTL_SECONDS)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.get(job_key(job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    def update(self, job_id: str, **fields: Any) -> JobRecord | None:
        record = self.get(job_id)
        if record is None:
            return None
        return self.save(_apply(record, fields))

    def start(self, job_id: str, attempts: int) -> JobRecord | None:
        """A run of the job begins: `running`, with its attempts; but a job another run
        has already settled (a batch that took this document in, ADR 0057) keeps its
        `completed` or `failed`, only its attempts change. Atomic against that run's
        write (WATCH), so a settled job never goes back to running."""
        from redis.exceptions import WatchError

        key = job_key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if not raw:
                        return None
                    record = JobRecord.model_validate_json(raw)
                    fields: dict[str, Any] = {"attempts": attempts}
                    if record.status not in SETTLED:
                        fields["status"] = "running"
                    record = _apply(record, fields)
                    pipe.multi()
                    pipe.set(key, record.model_dump_json(), ex=JOB_TTL_SECONDS)
                    pipe.execute()
                    return record
                except WatchError:
                    continue  # written meanwhile: read it again


_send_lock = threading.Lock()


@lru_cache(maxsize=4)
def _producer(broker_url: str) -> Any:
    from celery import Celery

    app = Celery("fm-producer", broker=broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=False,
        broker_transport_options=broker_transport_options(3600),
    )
    return app


def enqueue(
    broker_url: str,
    task: str,
    *,
    queue: str,
    kwargs: dict[str, Any],
    task_id: str | None = None,
    countdown: float | None = None,
    priority: int | None = None,
) -> str:
    """Send task `task` (by name) to `queue`; returns the Celery task id. `priority`:
    0 (first, the default) to 9 (last); see `fair_priority`.

    Synchronous (kombu); call it with `asyncio.to_thread` from async code. Raises the
    broker's connection error when Redis is down, which services answer with 503.
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    # Services call this from asyncio.to_thread, so several threads may send at once; the
    # cached producer's kombu connection is not thread-safe (seen as a spurious "job queue
    # unavailable" when two uploads were queued together), so sends take turns.
    with _send_lock:
        result = _send(broker_url, task, queue, kwargs, task_id, countdown, priority)
    return str(result.id)


def _send(
    broker_url: str,
    task: str,
    queue: str,
    kwargs: dict[str, Any],
    task_id: str | None,
    countdown: float | None,
    priority: int | None = None,
) -> Any:
    return _producer(broker_url).send_task(
        task,
        kwargs=kwargs,
        queue=queue,
        task_id=task_id,
        countdown=countdown,
        priority=priority,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
    )


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
