"""What a service's Celery tasks need from the worker that hosts them (ADR 0055).

Each service keeps its tasks beside its domain (`domain/<area>/tasks.py`) and declares
them here with `@task(name, queue=...)`, without Celery: `fm-job-worker` (the host)
imports those modules and registers every declared task on its Celery app with the
shared reliability (in-flight tracking, retries with backoff, `give_up` on a permanent
failure, the job record). A task is `fn(ctx, **kwargs)` returning JSON; it reaches the
worker process's resources through `ctx.host` (the `Host` protocol below), never
through the worker's modules, so no service imports the worker.

Work one service's task does with another service's code in the same process (the
agent's redactor for evidence indexing, the knowledge extraction for a queued turn) goes
through `Host.peers`, which the host wires; services never import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import httpx
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from fm_common.clients.auth import AuthClient
    from fm_common.jobs import SyncJobStore

T = TypeVar("T")
R = TypeVar("R")
# What a task returns (JSON), kept as its job's result.
TaskResult = dict[str, Any] | None
Kwargs = dict[str, Any]
F = TypeVar("F", bound=Callable[..., TaskResult])


class PermanentError(Exception):
    """The task cannot succeed by retrying; the message is shown to the user."""

    def __init__(self, message: str, code: str = "FAILED") -> None:
        super().__init__(message)
        self.code = code


class HostSettings(Protocol):
    """The worker's settings a task reads (FM_WORKER_*, shared FM_*)."""

    @property
    def redis_url(self) -> str: ...
    @property
    def evidence_url(self) -> str: ...
    @property
    def knowledge_url(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def ingest_time_limit(self) -> int: ...
    @property
    def slice_seconds(self) -> float: ...
    @property
    def orphan_grace_seconds(self) -> int: ...


class Peers(Protocol):
    """Another service's code a task runs in the same worker process (the host wires it)."""

    def redact(self, case_id: str, texts: list[str], *, chunks: bool) -> list[str]:
        """The texts with every sensitive value replaced by the case's placeholder (the
        agent's redactor); `chunks`: each text was cut out of a longer document."""
        ...

    def drop_redaction_map(self, case_id: str) -> None:
        """Delete the case's redaction map (the agent's, in Redis) with the case."""
        ...

    def read_pending_text(self, file_id: str, owner_id: str) -> str:
        """Read an image's or office document's text now if its index task has not yet
        (the knowledge extraction); the text's status afterwards."""
        ...


class Host(Protocol):
    """One worker process's resources, built lazily after the fork."""

    @property
    def settings(self) -> HostSettings: ...
    @property
    def redis(self) -> Redis: ...
    @property
    def jobs(self) -> SyncJobStore: ...
    @property
    def http(self) -> httpx.AsyncClient: ...
    @property
    def aredis(self) -> AsyncRedis: ...
    @property
    def auth(self) -> AuthClient: ...
    @property
    def peers(self) -> Peers: ...

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this process's event loop (clients are bound to it)."""
        ...

    def service_token(self, user_id: str) -> str:
        """A service token acting for `user_id`."""
        ...

    def resource(self, build: Callable[[Host], R]) -> R:
        """`build(host)`, made once per process (keyed by `build`)."""
        ...

    def send_task(
        self,
        name: str,
        kwargs: Kwargs,
        *,
        queue: str,
        countdown: float | None = None,
        priority: int | None = None,
    ) -> None:
        """Enqueue a task by name (no result kept); `priority` as `fm_common.jobs.enqueue`."""
        ...

    def expect(self, track_id: str, name: str, queue: str, kwargs: Kwargs) -> None:
        """Record work as in flight before it is sent, so that if the send never happens
        (the broker down right then) jobs.reap_stale sends it."""
        ...

    def resend(self, track_id: str) -> None:
        """Send work recorded by `expect` (under its track id)."""
        ...


class TaskContext(Protocol):
    """One run of a task."""

    @property
    def host(self) -> Host: ...
    @property
    def job_id(self) -> str | None: ...
    @property
    def track_id(self) -> str:
        """The work's id across redeliveries (its job id, else the message id)."""
        ...

    @property
    def attempts(self) -> int:
        """1 on the first delivery; counts redeliveries and retries."""
        ...

    def progress(self, fraction: float) -> None:
        """Refresh the heartbeat, and the job's progress."""
        ...

    def leave_job(self) -> None:
        """This run does not write the task's job (status or progress): another run
        settles it (it took the work into its batch), or an earlier slice did."""
        ...

    def slice_over(self) -> bool:
        """This run has had its share of the worker child (FM_WORKER_SLICE_SECONDS since
        it started): long work that can be resumed stops at its next safe point and calls
        `resume_later`, so a task another user queued gets the child (ADR 0160)."""
        ...

    def resume_later(self, **changes: Any) -> None:
        """End this run as one slice of the work: once the task returns, it is sent
        again with its kwargs updated by `changes`, at the priority it came with, as the
        next slice (tracked, redone after a crash, and sent once even when this slice is
        redelivered). The job stays running; the task's return value is not its result."""
        ...


# How to record a task's permanent failure: (host, kwargs, message, code).
GiveUp = Callable[[Host, Kwargs, str, str], None]


def record_job_failure(host: Host, kwargs: Kwargs, message: str, code: str) -> None:
    """The default `give_up`: the task's job (when it has one) says failed."""
    job_id = kwargs.get("job_id")
    if job_id:
        host.jobs.update(job_id, status="failed", error={"message": message, "code": code})


@dataclass(frozen=True)
class TaskSpec:
    name: str
    queue: str
    fn: Callable[..., TaskResult]
    give_up: GiveUp = record_job_failure


# Every declared task by name, filled as the task modules are imported.
TASKS: dict[str, TaskSpec] = {}


def task(name: str, *, queue: str, give_up: GiveUp = record_job_failure) -> Callable[[F], F]:
    """Declare `fn(ctx, **kwargs)` as the task `name` on `queue` (ingest, agent,
    maintenance). The name is what services enqueue and beat schedules: never rename one."""

    def declare(fn: F) -> F:
        known = TASKS.get(name)
        if known is not None and known.fn.__qualname__ != fn.__qualname__:
            raise RuntimeError(f"task {name!r} is declared twice")
        TASKS[name] = TaskSpec(name, queue, fn, give_up)
        return fn

    return declare
