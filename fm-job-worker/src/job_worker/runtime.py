"""Per-process resources of a worker child, created lazily after the fork.

The knowledge database is reached through the knowledge service's own settings and
domain code (FM_KNOWLEDGE_DATABASE_URL, FM_DATA_DIR), on one event loop per process
(`asyncio.Runner`) so the async engine and HTTP clients are reused between tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from fm_common.jobs import SyncJobStore
from fm_common.redis import create_sync_redis
from fm_common.settings import load_settings
from job_worker.config import Settings

T = TypeVar("T")
log = structlog.get_logger("worker.runtime")
BM25_PENDING = "fm:knowledge:bm25-pending:"
BM25_DEBOUNCE_SECONDS = 2.0


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runner = asyncio.Runner()
        # Retries once on a dropped connection (Redis restarted), as every client does.
        self.redis = create_sync_redis(settings.redis_url, socket_timeout=30)
        self.jobs = SyncJobStore(self.redis)

    @cached_property
    def knowledge(self) -> Any:
        from knowledge_service.config import Settings as KnowledgeSettings

        return load_settings(KnowledgeSettings)

    @cached_property
    def maker(self) -> Any:
        from fm_common.db import create_engine, create_sessionmaker

        return create_sessionmaker(create_engine(self.knowledge.effective_database_url))

    def db(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run one unit of work on the knowledge database and commit it."""

        maker = self.maker

        async def unit() -> T:
            async with maker() as session:
                result = await fn(session)
                await session.commit()
                return result

        return self.run(unit())

    def run(self, coro: Awaitable[T]) -> T:
        # A copy of this task's context: the runner's own would carry every earlier
        # task's log context (ids bound inside coroutines) and never this task's.
        return self.runner.run(coro, context=contextvars.copy_context())  # type: ignore[arg-type]

    # Clients bound to this process's loop are built on it, outside any running task.

    @cached_property
    def embedder(self) -> Any:
        from knowledge_service.domain.vectors.embedder import embedder_for

        return embedder_for(self.knowledge)

    @cached_property
    def store(self) -> Any:
        from knowledge_service.domain.vectors.store import VectorStore

        k = self.knowledge
        return VectorStore(k.chroma_url, self.embedder.name, k.retry_after_seconds)

    @cached_property
    def bm25(self) -> Any:
        from knowledge_service.domain.vectors.bm25 import Bm25Indexes

        return Bm25Indexes(self.knowledge.bm25_dir, self.store)

    def collection_changed(self, collection: str) -> None:
        """Bump the collection's version and schedule one BM25 rebuild for a burst of changes.

        Rebuilding after every document would cost O(collection) per ingestion; instead
        the first change of a burst schedules `knowledge.refresh_bm25` a moment later.
        The version is what matters (a search finds its index stale and rebuilds it); the
        refresh only saves that search the wait, so failing to schedule it is not fatal.
        """
        from knowledge_service.domain.vectors.bm25 import version_key

        pending = f"{BM25_PENDING}{collection}"
        self.redis.incr(version_key(collection))
        if self.redis.set(pending, "1", nx=True, ex=60):
            from job_worker.app import app

            try:
                app.send_task(
                    "knowledge.refresh_bm25",
                    kwargs={"collection": collection},
                    queue="maintenance",
                    countdown=BM25_DEBOUNCE_SECONDS,
                    ignore_result=True,
                )
            except Exception as exc:  # the broker is down: the next change tries again
                self.redis.delete(pending)
                log.warning("bm25.refresh_not_scheduled", collection=collection, error=repr(exc))

    def ingest_deps(self) -> Any:
        from knowledge_service.domain.ingest.pipeline import IngestDeps

        return IngestDeps(
            settings=self.knowledge,
            store=self.store,
            embedder=self.embedder,
            db=self.db,
            changed=self.collection_changed,
            job_failed=self._job_failed,
        )

    def _job_failed(self, job_id: str, reason: str) -> None:
        # Before the document says failed: whoever sees it failed finds its job failed.
        self.jobs.update(
            job_id, status="failed", error={"message": reason, "code": "INGEST_FAILED"}
        )

    @cached_property
    def aredis(self) -> Any:
        """An asyncio Redis client on this process's loop (for async domain code)."""
        from fm_common.redis import create_redis

        async def build() -> Any:
            return create_redis(self.settings.redis_url)

        return self.runner.run(build())

    @cached_property
    def http(self) -> Any:
        from fm_common.clients.base import create_http_client

        async def build() -> Any:
            return create_http_client(
                connect_timeout=self.settings.http_connect_timeout,
                timeout=self.settings.http_timeout,
            )

        return self.runner.run(build())

    @cached_property
    def auth(self) -> Any:
        from fm_common.clients.auth import AuthClient

        return AuthClient(
            self.settings.auth_url,
            self.http,
            client_id=self.settings.service_client_id,
            client_secret=self.settings.service_client_secret,
        )

    def service_token(self, user_id: str) -> str:
        return self.run(self.auth.service_token(user_id))


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        from job_worker.app import settings

        _runtime = Runtime(settings)
    return _runtime


def preload_knowledge() -> None:
    """Load the embedding model, and import the knowledge code the children run, into
    this process (the worker's main one, before it forks). Imported lazily, the Chroma
    client (~0.6 s) and BM25 with scipy (~0.5 s) cost each child its first task's time.
    No thread may be left running: a fork copies only the forking thread. An ONNX
    session is made with one intra-op thread, which starts no thread pool, so the
    children use it as it is; a child configured for more threads makes its own (a
    pool would not survive the fork; ADR 0095)."""
    import tqdm

    # The model's loading bar would start tqdm's monitor thread.
    tqdm.tqdm.monitor_interval = 0
    import chromadb  # noqa: F401

    import knowledge_service.domain.ingest.pipeline
    import knowledge_service.domain.vectors.bm25  # noqa: F401
    from knowledge_service.config import Settings as KnowledgeSettings
    from knowledge_service.domain.vectors.embedder import embedder_for

    embedder = embedder_for(load_settings(KnowledgeSettings))
    if embedder.backend == "onnx":
        embedder.set_threads(1)
    embedder.load()


def reset_runtime() -> None:
    """Forget the parent's resources in a freshly forked child."""
    global _runtime
    _runtime = None


def set_embedding_threads(threads: int) -> None:
    """In a freshly forked child: the embedder's intra-op threads (a preloaded ONNX
    session of one thread is used as it is; another count makes the child's own)."""
    from knowledge_service.config import Settings as KnowledgeSettings
    from knowledge_service.domain.vectors.embedder import embedder_for

    embedder_for(load_settings(KnowledgeSettings)).set_threads(threads)
