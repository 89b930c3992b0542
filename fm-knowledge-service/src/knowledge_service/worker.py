"""The knowledge service's code in the Celery worker (ADR 0055): its per-process
resources there, and the embedder the worker's main process loads before it forks.

The worker reaches the knowledge database through the knowledge service's own settings
(FM_KNOWLEDGE_DATABASE_URL, FM_DATA_DIR), on the worker process's event loop, so the same
repository code serves the service and the worker; Chroma and the BM25 indexes directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fm_common.blobs import BlobStore, open_blob_store
from fm_common.db import create_engine, create_sessionmaker
from fm_common.settings import load_settings
from fm_common.tasks import Host
from knowledge_service.config import Settings
from knowledge_service.domain.ingest.pipeline import IngestDeps
from knowledge_service.domain.vectors.bm25 import Bm25Indexes, version_key
from knowledge_service.domain.vectors.embedder import Embedder, embedder_for
from knowledge_service.domain.vectors.store import VectorStore

T = TypeVar("T")
log = structlog.get_logger("worker.knowledge")
BM25_PENDING = "fm:knowledge:bm25-pending:"
BM25_DEBOUNCE_SECONDS = 2.0


class KnowledgeWorker:
    """One worker process's knowledge resources, made on first use (after the fork)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.settings = load_settings(Settings)

    @cached_property
    def maker(self) -> async_sessionmaker[AsyncSession]:
        return create_sessionmaker(create_engine(self.settings.effective_database_url))

    def db(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run one unit of work on the knowledge database and commit it."""
        maker = self.maker

        async def unit() -> T:
            async with maker() as session:
                result = await fn(session)
                await session.commit()
                return result

        return self.host.run(unit())

    @cached_property
    def embedder(self) -> Embedder:
        return embedder_for(self.settings)

    @cached_property
    def store(self) -> VectorStore:
        k = self.settings
        return VectorStore(k.chroma_url, self.embedder.name, k.retry_after_seconds)

    @cached_property
    def blobs(self) -> BlobStore:
        """The originals and extracted text, where the service stored them (not its disk:
        the same S3 bucket in a multi-host deployment)."""
        return open_blob_store(self.settings, "knowledge")

    @cached_property
    def bm25(self) -> Bm25Indexes:
        return Bm25Indexes(self.settings.bm25_dir, self.store)

    def collection_changed(self, collection: str) -> None:
        """Bump the collection's version and schedule one BM25 rebuild for a burst of changes.

        Rebuilding after every document would cost O(collection) per ingestion; instead
        the first change of a burst schedules `knowledge.refresh_bm25` a moment later.
        The version is what matters (a search finds its index stale and rebuilds it); the
        refresh only saves that search the wait, so failing to schedule it is not fatal.
        """
        redis = self.host.redis
        pending = f"{BM25_PENDING}{collection}"
        redis.incr(version_key(collection))
        if redis.set(pending, "1", nx=True, ex=60):
            try:
                self.host.send_task(
                    "knowledge.refresh_bm25",
                    {"collection": collection},
                    queue="maintenance",
                    countdown=BM25_DEBOUNCE_SECONDS,
                )
            except Exception as exc:  # the broker is down: the next change tries again
                redis.delete(pending)
                log.warning("bm25.refresh_not_scheduled", collection=collection, error=repr(exc))

    def ingest_deps(self) -> IngestDeps:
        return IngestDeps(
            settings=self.settings,
            blobs=self.blobs,
            store=self.store,
            embedder=self.embedder,
            db=self.db,
            changed=self.collection_changed,
            job_failed=self._job_failed,
        )

    def _job_failed(self, job_id: str, reason: str) -> None:
        # Before the document says failed: whoever sees it failed finds its job failed.
        self.host.jobs.update(
            job_id, status="failed", error={"message": reason, "code": "INGEST_FAILED"}
        )


def knowledge(host: Host) -> KnowledgeWorker:
    """This worker process's knowledge resources."""
    return host.resource(KnowledgeWorker)


def preload() -> None:
    """Load the embedding model, and import the Chroma client, into this process (the
    worker's main one, before it forks; the task modules it imported brought the rest of
    the knowledge code, BM25 with scipy too). Imported lazily, the Chroma client (~0.6 s)
    and BM25 (~0.5 s) cost each child its first task's time.
    No thread may be left running: a fork copies only the forking thread. An ONNX
    session is made with one intra-op thread, which starts no thread pool, so the
    children use it as it is; a child configured for more threads makes its own (a
    pool would not survive the fork; ADR 0095)."""
    import tqdm

    # The model's loading bar would start tqdm's monitor thread.
    tqdm.tqdm.monitor_interval = 0
    import chromadb  # noqa: F401

    embedder = embedder_for(load_settings(Settings))
    if embedder.backend == "onnx":
        embedder.set_threads(1)
    embedder.load()


def set_embedding_threads(threads: int) -> None:
    """In a freshly forked child: the embedder's intra-op threads (a preloaded ONNX
    session of one thread is used as it is; another count makes the child's own)."""
    embedder_for(load_settings(Settings)).set_threads(threads)
