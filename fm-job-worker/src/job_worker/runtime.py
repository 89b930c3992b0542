"""Per-process resources of a worker child, created lazily after the fork.

`Runtime` is the `fm_common.tasks.Host` every task receives (`ctx.host`): one event loop
per process (`asyncio.Runner`) so async clients are reused between tasks, Redis, the job
store, HTTP and auth clients, the services' own per-process resources (`resource`), and
the peers (another service's code a task runs). Services' resources (the knowledge
database and embedder, the case database, the agent's runtime) are built by their own
modules through `resource`, and go with the runtime when a forked child resets it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx
import structlog
from celery import Celery
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from fm_common.clients.auth import AuthClient
from fm_common.clients.base import create_http_client
from fm_common.jobs import SyncJobStore
from fm_common.redis import create_redis, create_sync_redis
from fm_common.tasks import Host, Kwargs
from job_worker import tracking
from job_worker.config import Settings

if TYPE_CHECKING:
    from job_worker.peers import Peers

T = TypeVar("T")
R = TypeVar("R")
log = structlog.get_logger("worker.runtime")


class Runtime:
    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self.runner = asyncio.Runner()
        # Retries once on a dropped connection (Redis restarted), as every client does.
        self.redis: Redis = create_sync_redis(settings.redis_url, socket_timeout=30)
        self.jobs = SyncJobStore(self.redis)
        self._resources: dict[Callable[..., Any], Any] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        # A copy of this task's context: the runner's own would carry every earlier
        # task's log context (ids bound inside coroutines) and never this task's.
        return self.runner.run(coro, context=contextvars.copy_context())

    def resource(self, build: Callable[[Host], R]) -> R:
        if build not in self._resources:
            self._resources[build] = build(self)
        return cast(R, self._resources[build])

    def send_task(
        self,
        name: str,
        kwargs: Kwargs,
        *,
        queue: str,
        countdown: float | None = None,
        priority: int | None = None,
    ) -> None:
        # ignore_result: otherwise the app subscribes to a result channel per send.
        self.app.send_task(
            name,
            kwargs=kwargs,
            queue=queue,
            countdown=countdown,
            priority=priority,
            ignore_result=True,
        )

    def expect(self, track_id: str, name: str, queue: str, kwargs: Kwargs) -> None:
        entry = tracking.InFlight(
            track_id=track_id, task=name, queue=queue, kwargs=kwargs, state="requeued"
        )
        tracking.record(self.redis, entry)

    def resend(self, track_id: str) -> None:
        entry = tracking.get(self.redis, track_id)
        if entry is not None:
            tracking.resend(self.app, self.redis, entry)

    # Clients bound to this process's loop are built on it, outside any running task.

    @cached_property
    def aredis(self) -> AsyncRedis:
        """An asyncio Redis client on this process's loop (for async domain code)."""

        async def build() -> AsyncRedis:
            return create_redis(self.settings.redis_url)

        return self.runner.run(build())

    @cached_property
    def http(self) -> httpx.AsyncClient:
        async def build() -> httpx.AsyncClient:
            return create_http_client(
                connect_timeout=self.settings.http_connect_timeout,
                timeout=self.settings.http_timeout,
            )

        return self.runner.run(build())

    @cached_property
    def auth(self) -> AuthClient:
        return AuthClient(
            self.settings.auth_url,
            self.http,
            client_id=self.settings.service_client_id,
            client_secret=self.settings.service_client_secret,
        )

    @cached_property
    def peers(self) -> Peers:
        # Imported here: the services' modules load in job_worker.app's
        # import_task_modules (with one BLAS thread), not with this module.
        from job_worker.peers import Peers

        return Peers(self)

    def service_token(self, user_id: str) -> str:
        return self.run(self.auth.service_token(user_id))

    def close(self) -> None:
        self.runner.close()


_current: Runtime | None = None


def current(settings: Settings, app: Celery) -> Runtime:
    """This process's runtime (made on first use, after the fork)."""
    global _current
    if _current is None:
        _current = Runtime(settings, app)
    return _current


def install(runtime: Runtime | None) -> None:
    """Use `runtime` in this process (None: forget it, as a freshly forked child does)."""
    global _current
    _current = runtime
