"""The base task of the host: the reliability every FaultMaven task shares.

`register(app, spec, settings)` turns a task a service declared (`fm_common.tasks.task`)
into a Celery task of the same name, on `TrackedTask`:

- acks_late + reject_on_worker_lost: a task whose worker dies is redelivered.
- In-flight tracking (job_worker.tracking): redone at worker start or by reap_stale.
- Transient errors (a store or service down) are retried with exponential backoff and
  jitter; when retries run out, or on a permanent error, `give_up` records the failure
  (on the job, and on the document for ingestion): never lost silently.
- The job record (fm_common.jobs), when the task carries a `job_id`, follows along:
  running -> completed | failed, with attempts and progress.
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import kombu.exceptions
import redis.exceptions as rexc
import sqlalchemy.exc as saexc
import structlog
from celery import Celery, Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from fm_common.blobs import StoreUnavailable
from fm_common.errors import FMError, GatewayTimeout, Unavailable
from fm_common.tasks import GiveUp, Kwargs, PermanentError, TaskResult, TaskSpec
from job_worker import tracking
from job_worker.config import Settings
from job_worker.runtime import Runtime, current

log = structlog.get_logger("worker.task")


def is_transient(exc: BaseException) -> bool:
    """A dependency down or timing out: worth retrying later."""
    return isinstance(
        exc,
        Unavailable
        | GatewayTimeout
        | ConnectionError
        | TimeoutError
        | httpx.TransportError
        | rexc.ConnectionError
        | rexc.TimeoutError
        | saexc.OperationalError
        | saexc.InterfaceError
        | saexc.TimeoutError
        | kombu.exceptions.OperationalError
        | StoreUnavailable,
    )


class Context:
    """One run of a task (`fm_common.tasks.TaskContext`)."""

    def __init__(self, rt: Runtime, entry: tracking.InFlight, job_id: str | None) -> None:
        self.rt = rt
        self.entry = entry
        self.job_id = job_id
        self.job_left = False

    @property
    def host(self) -> Runtime:
        return self.rt

    @property
    def track_id(self) -> str:
        return self.entry.track_id

    @property
    def attempts(self) -> int:
        return self.entry.attempts

    def leave_job(self) -> None:
        self.job_left = True

    def progress(self, fraction: float) -> None:
        tracking.heartbeat(self.rt.redis, self.entry)
        if self.job_id:
            self.rt.jobs.update(self.job_id, progress=round(fraction, 3))


class TrackedTask(Task):
    """Acknowledged late, requeued when its worker dies, retried without a cap of its
    own (the run below counts retries against FM_WORKER_MAX_RETRIES)."""

    acks_late = True
    reject_on_worker_lost = True
    max_retries = None


def backoff(retries: int, cap: int) -> float:
    return min(cap, 2 ** (retries + 1)) * (0.75 + random.random() / 2)


def limits(settings: Settings, queue: str) -> tuple[int, int]:
    """(soft, hard) time limits of a task on `queue`: ingestion's, or maintenance's."""
    if queue == "ingest":
        return settings.ingest_soft_time_limit, settings.ingest_time_limit
    return settings.maintenance_soft_time_limit, settings.maintenance_time_limit


def register(app: Celery, spec: TaskSpec, settings: Settings) -> Task:
    """Register the declared task `spec` on `app` (routed to its queue) as a TrackedTask."""
    name, queue, give_up = spec.name, spec.queue, spec.give_up
    soft_time_limit, time_limit = limits(settings, queue)
    routes = dict(app.conf.task_routes or {})
    routes[name] = {"queue": queue}
    app.conf.task_routes = routes

    @app.task(
        name=name,
        base=TrackedTask,
        bind=True,
        soft_time_limit=soft_time_limit,
        time_limit=time_limit,
    )
    def run(self: Task, **kwargs: Any) -> TaskResult:
        rt = current(settings, app)
        conf = rt.settings  # this process's (a test's runtime brings its own)
        job_id = kwargs.get("job_id")
        track_id = job_id or self.request.id
        entry = tracking.begin(
            rt.redis, track_id, name, queue, kwargs, self.request.hostname or "?"
        )
        # A task's log lines carry its own ids only (never an earlier task's).
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task=name, track_id=track_id)
        if entry.attempts > conf.max_attempts + conf.max_retries:
            message = "The job was redelivered too many times (it keeps killing its worker)."
            _fail(rt, give_up, kwargs, message, "TOO_MANY_ATTEMPTS", track_id)
            return None
        if job_id:
            rt.jobs.update(job_id, status="running", attempts=entry.attempts)
        ctx = Context(rt, entry, job_id)
        try:
            result = spec.fn(ctx, **{k: v for k, v in kwargs.items() if k != "job_id"})
        except Retry:
            raise
        except PermanentError as exc:
            _fail(rt, give_up, kwargs, str(exc), exc.code, track_id)
            return None
        except SoftTimeLimitExceeded:
            message = f"The job took longer than its limit of {soft_time_limit} s."
            _fail(rt, give_up, kwargs, message, "TIME_LIMIT", track_id)
            return None
        except Exception as exc:
            if not is_transient(exc):
                # A bug, not bad input: record it (no stack trace to the user).
                log.exception("task.crashed", error=repr(exc))
                message = "The job failed unexpectedly."
                _fail(rt, give_up, kwargs, message, "INTERNAL_ERROR", track_id)
                return None
            if self.request.retries >= conf.max_retries:
                detail = exc.detail if isinstance(exc, FMError) else repr(exc)
                message = f"A dependency stayed unavailable: {detail}"
                _fail(rt, give_up, kwargs, message, "DEPENDENCY_UNAVAILABLE", track_id)
                return None
            countdown = backoff(self.request.retries, conf.retry_backoff_max)
            log.warning(
                "task.retrying",
                error=repr(exc),
                countdown=round(countdown, 1),
                retries=self.request.retries,
            )
            try:
                tracking.park(rt.redis, entry)
            except Exception as park_exc:  # Redis itself may be the one down
                log.warning("task.park_failed", error=repr(park_exc))
            raise self.retry(exc=exc, countdown=countdown) from exc
        if job_id and not ctx.job_left:
            rt.jobs.update(job_id, status="completed", progress=1.0, result=result, error=None)
        tracking.end(rt.redis, track_id)
        log.info("task.completed", attempts=entry.attempts)
        return result

    return run


def _fail(
    rt: Runtime, give_up: GiveUp, kwargs: Kwargs, message: str, code: str, track_id: str
) -> None:
    log.warning("task.failed", code=code, reason=message)
    give_up(rt, kwargs, message, code)
    tracking.end(rt.redis, track_id)
