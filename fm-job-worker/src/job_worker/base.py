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
- Slices (ADR 0160): a task that calls `ctx.resume_later(**changes)` ends this run as
  one slice; the host sends the next (kwargs updated, the same priority, track id
  `<first slice's>/<n>`, the reserved kwarg `slice`), and a redelivered slice that had
  already handed over ends at once. Each slice has its own attempts and limits.
"""

from __future__ import annotations

import random
import time
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
from fm_common.jobs import JOB_TTL_SECONDS
from fm_common.tasks import GiveUp, Kwargs, PermanentError, TaskResult, TaskSpec
from job_worker import tracking
from job_worker.config import Settings
from job_worker.runtime import Runtime, current

log = structlog.get_logger("worker.task")

# The kwarg the host adds to a slice after the first: {"of": first track id, "n": n}.
SLICE_KWARG = "slice"
HOST_KWARGS = frozenset({"job_id", SLICE_KWARG})


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

    def __init__(
        self,
        rt: Runtime,
        entry: tracking.InFlight,
        job_id: str | None,
        slice_seconds: float = 0.0,
    ) -> None:
        self.rt = rt
        self.entry = entry
        self.job_id = job_id
        self.job_left = False
        self.started = time.monotonic()
        self.slice_seconds = slice_seconds
        # The kwargs changes of the next slice, when this run ends as a slice.
        self.resume: dict[str, Any] | None = None

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
        if self.job_id and not self.job_left:  # a job left to others is theirs to write
            self.rt.jobs.update(self.job_id, progress=round(fraction, 3))

    def slice_over(self) -> bool:
        return 0 < self.slice_seconds <= time.monotonic() - self.started

    def resume_later(self, **changes: Any) -> None:
        if HOST_KWARGS & changes.keys():
            raise ValueError(f"a slice cannot change {sorted(HOST_KWARGS & changes.keys())}")
        self.resume = changes


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
        part = kwargs.get(SLICE_KWARG)
        track_id = f"{part['of']}/{part['n']}" if part else job_id or self.request.id
        # A task's log lines carry its own ids only (never an earlier task's).
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task=name, track_id=track_id)
        if tracking.slice_done(rt.redis, track_id):
            # Redelivered (or recovered) after it had handed the rest of its work over:
            # done; an entry its killed run left is ended, not reaped as lost.
            log.info("task.slice_already_done")
            tracking.end(rt.redis, track_id)
            return None
        priority = (self.request.delivery_info or {}).get("priority")
        entry = tracking.begin(
            rt.redis, track_id, name, queue, kwargs, self.request.hostname or "?", priority
        )
        if entry.attempts > conf.max_attempts + conf.max_retries:
            message = "The job was redelivered too many times (it keeps killing its worker)."
            _fail(rt, give_up, kwargs, message, "TOO_MANY_ATTEMPTS", track_id)
            return None
        if job_id and not part:
            rt.jobs.start(job_id, entry.attempts)  # a job a batch settled stays settled
        elif job_id and entry.attempts > 1:
            # A later slice redone leaves the job's status as the earlier slices did:
            # running, or settled by the task already (a batch member done before the
            # batch, ADR 0166).
            rt.jobs.update(job_id, attempts=entry.attempts)
        ctx = Context(rt, entry, job_id, conf.slice_seconds)
        try:
            result = spec.fn(ctx, **{k: v for k, v in kwargs.items() if k not in HOST_KWARGS})
            if ctx.resume is not None:
                _hand_over(rt, entry, ctx.resume)
                tracking.end(rt.redis, track_id)
                return result
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


def _hand_over(rt: Runtime, entry: tracking.InFlight, changes: dict[str, Any]) -> None:
    """Send the slice after `entry`'s: its kwargs with `changes`, at its priority."""
    part = entry.kwargs.get(SLICE_KWARG)
    first, n = (part["of"], part["n"]) if part else (entry.track_id, 0)
    following = tracking.InFlight(
        track_id=f"{first}/{n + 1}",
        task=entry.task,
        queue=entry.queue,
        kwargs={**entry.kwargs, **changes, SLICE_KWARG: {"of": first, "n": n + 1}},
        priority=entry.priority,
    )
    sent = tracking.hand_over(rt.app, rt.redis, entry.track_id, following, JOB_TTL_SECONDS)
    log.info("task.sliced", next=following.track_id, sent=sent, changes=changes)


def _fail(
    rt: Runtime, give_up: GiveUp, kwargs: Kwargs, message: str, code: str, track_id: str
) -> None:
    log.warning("task.failed", code=code, reason=message)
    give_up(rt, kwargs, message, code)
    tracking.end(rt.redis, track_id)
