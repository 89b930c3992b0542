"""Re-indexing a collection for the configured embedding model, as a background job.

The job record is created, a per-collection lock taken, then `knowledge.reindex_collection`
is enqueued with the job id as its task id (the worker rebuilds the collection into
`<name>-reindex` and swaps it in, resumable; domain/vectors/reindex.py). One re-index per
collection at a time: two would share one work copy. The lock (Redis, `SET NX`) names the
job holding it; the task cannot release it, so a lock whose job has ended (completed or
failed) or whose job record is gone counts as free and is taken over atomically.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog

from fm_common.auth import Principal
from fm_common.contracts.knowledge import JobRef, ReindexAccepted
from fm_common.errors import Conflict, Unavailable
from fm_common.jobs import JOB_TTL_SECONDS, JobStore, enqueue
from knowledge_service.config import Settings
from knowledge_service.domain.collections.service import require_collection
from knowledge_service.domain.documents.flows import job_location
from knowledge_service.domain.vectors.store import VectorStore

log = structlog.get_logger("knowledge.reindex")

REINDEX_TASK = "knowledge.reindex_collection"
REINDEX_QUEUE = "maintenance"
LOCK_PREFIX = "fm:knowledge:reindex-lock:"
# As long as the job record it points to may live; the job's status decides in between.
LOCK_SECONDS = JOB_TTL_SECONDS
# Replace the lock only if it still names the ended job we looked at.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ReindexInProgress(Conflict):
    code = "REINDEX_IN_PROGRESS"
    detail = "A re-index of this collection is already queued or running."


def lock_key(collection: str) -> str:
    return f"{LOCK_PREFIX}{collection}"


async def _lock(redis: Any, jobs: JobStore, collection: str, job_id: str) -> None:
    key = lock_key(collection)
    if await redis.set(key, job_id, nx=True, ex=LOCK_SECONDS):
        return
    holder = await redis.get(key)
    if holder is not None:
        record = await jobs.get(holder)
        if record is not None and record.status in ("queued", "running"):
            raise ReindexInProgress(
                extra={"job": {"job_id": holder, "location": job_location(holder)}}
            )
        if await redis.eval(_TAKE_OVER, 1, key, holder, job_id, LOCK_SECONDS):
            return
    elif await redis.set(key, job_id, nx=True, ex=LOCK_SECONDS):
        return  # it expired between the two calls
    raise ReindexInProgress()  # another request took it over first


async def _unlock(redis: Any, collection: str, job_id: str) -> None:
    await redis.eval(_RELEASE, 1, lock_key(collection), job_id)


async def request_reindex(
    *,
    redis: Any,
    store: VectorStore,
    settings: Settings,
    principal: Principal,
    collection: str,
) -> ReindexAccepted:
    """Queue a re-index of `collection` for the configured model (202 + job)."""
    await asyncio.to_thread(require_collection, store, collection)
    job_id = str(uuid.uuid4())
    jobs = JobStore(redis)
    kwargs = {"collection": collection, "job_id": job_id}
    await _lock(redis, jobs, collection, job_id)
    try:
        await jobs.create(
            REINDEX_TASK,
            principal.user_id,
            job_id=job_id,
            payload={"task": REINDEX_TASK, "queue": REINDEX_QUEUE, "kwargs": kwargs},
        )
    except BaseException:
        await _unlock(redis, collection, job_id)
        raise
    try:
        await asyncio.to_thread(
            enqueue,
            settings.redis_url,
            REINDEX_TASK,
            queue=REINDEX_QUEUE,
            kwargs=kwargs,
            task_id=job_id,
        )
    except Exception as exc:
        # Nothing was queued: end the job (which frees the lock for the next request even
        # if the unlock below fails), free the collection again, and say so.
        log.warning("reindex.enqueue_failed", collection=collection, error=repr(exc))
        try:
            await jobs.update(job_id, status="failed", error={"message": "queue unavailable"})
            await _unlock(redis, collection, job_id)
        except Exception as undo_exc:  # Redis itself went down: see docs/knowledge.md
            log.warning("reindex.undo_failed", collection=collection, error=repr(undo_exc))
        raise Unavailable(
            "The job queue is unavailable; try again later.",
            code="QUEUE_UNAVAILABLE",
            retry_after=settings.retry_after_seconds,
        ) from exc
    log.info("reindex.queued", collection=collection, job_id=job_id, model=store.model_name)
    return ReindexAccepted(
        collection=collection,
        embedding_model=store.model_name,
        job=JobRef(job_id=job_id, status="queued", location=job_location(job_id)),
    )
