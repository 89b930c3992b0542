"""`tracked_task`: the reliability every FaultMaven task shares.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from fm_common.errors import FMError, GatewayTimeout, Unavailable
from job_worker import tracking
from job_worker.runtime import Runtime, runtime

log = structlog.get_logger("worker.task")


class PermanentError(Exception):
    """The task cannot succeed by retrying; the message is shown to the user."""

    def __init__(self, message: str, code: str = "FAILED") -> None:
        super().__init__(message)
        self.code = code


def is_transient(exc: BaseException) -> bool:
    """A dependency down or timing out: worth retrying later."""
    if isinstance(exc, Unavailable | GatewayTimeout | ConnectionError | TimeoutError):
        return True
    import httpx
    import redis.exceptions as rexc
    import sqlalchemy.exc as saexc

    if isinstance(exc, httpx.TransportError | rexc.ConnectionError | rexc.TimeoutError):
        return True
    if isinstance(exc, saexc.OperationalError | saexc.InterfaceError | saexc.TimeoutError):
        return True
    try:
        import kombu.exceptions

        return isinstance(exc, kombu.exceptions.OperationalError)
    except ImportError:  # pragma: no cover
        return False


@dataclass
class TaskContext:
    task: Task
    rt: Runtime
    entry: tracking.InFlight
    job_id: str | None
    job_left: bool = False

    def leave_job(self) -> None:
        """Another run settles this task's job (it took the work into its batch)."""
        self.job_left = True

    def progress(self, fraction: float) -> None:
        tracking.heartbeat(self.rt.redis, self.entry)
        if self.job_id:
            self.rt.jobs.update(self.job_id, progress=round(fraction, 3))


GiveUp = Callable[[Runtime, dict[str, Any], str, str], None]
# Task name -> how to record its permanent failure (used by jobs.reap_stale too).
GIVE_UPS: dict[str, GiveUp] = {}


def record_job_failure(rt: Runtime, kwargs: dict[str, Any], message: str, code: str) -> None:
    job_id = kwargs.get("job_id")
    if job_id:
        rt.jobs.update(job_id, status="failed", error={"message": message, "code": code})


def backoff(retries: int, cap: int) -> float:
    return min(cap, 2 ** (retries + 1)) * (0.75 + random.random() / 2)


def tracked_task(
    app: Any,
    name: str,
    *,
    queue: str,
    soft_time_limit: int,
    time_limit: int,
    give_up: GiveUp = record_job_failure,
) -> Callable[[Callable[..., Any]], Task]:
    """Register `fn(ctx, **kwargs)` as the Celery task `name` with shared reliability."""

    def decorate(fn: Callable[..., Any]) -> Task:
        GIVE_UPS[name] = give_up
        routes = dict(app.conf.task_routes or {})
        routes[name] = {"queue": queue}
        app.conf.task_routes = routes

        @app.task(
            name=name,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            max_retries=None,
        )
        def run(self: Task, **kwargs: Any) -> Any:
            rt = runtime()
            settings = rt.settings
            job_id = kwargs.get("job_id")
            track_id = job_id or self.request.id
            entry = tracking.begin(
                rt.redis, track_id, name, queue, kwargs, self.request.hostname or "?"
            )
            # A task's log lines carry its own ids only (never an earlier task's).
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(task=name, track_id=track_id)
            if entry.attempts > settings.max_attempts + settings.max_retries:
                message = "The job was redelivered too many times (it keeps killing its worker)."
                _fail(rt, give_up, kwargs, message, "TOO_MANY_ATTEMPTS", track_id)
                return None
            if job_id:
                rt.jobs.update(job_id, status="running", attempts=entry.attempts)
            ctx = TaskContext(self, rt, entry, job_id)
            try:
                result = fn(ctx, **{k: v for k, v in kwargs.items() if k != "job_id"})
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
                    _fail(
                        rt,
                        give_up,
                        kwargs,
                        "The job failed unexpectedly.",
                        "INTERNAL_ERROR",
                        track_id,
                    )
                    return None
                if self.request.retries >= settings.max_retries:
                    detail = exc.detail if isinstance(exc, FMError) else repr(exc)
                    _fail(
                        rt,
                        give_up,
                        kwargs,
                        f"A dependency stayed unavailable: {detail}",
                        "DEPENDENCY_UNAVAILABLE",
                        track_id,
                    )
                    return None
                countdown = backoff(self.request.retries, settings.retry_backoff_max)
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

    return decorate


def _fail(
    rt: Runtime, give_up: GiveUp, kwargs: dict[str, Any], message: str, code: str, track_id: str
) -> None:
    log.warning("task.failed", code=code, reason=message)
    give_up(rt, kwargs, message, code)
    tracking.end(rt.redis, track_id)
