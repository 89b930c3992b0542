"""`jobs.reap_stale` (beat): in-flight work that went quiet is redone or failed.

Also fails knowledge documents left `processing` whose job no longer exists or already
ended (e.g. Redis lost its data), so no document waits forever.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from fm_common.db import utcnow
from job_worker import tracking
from job_worker.app import app, settings
from job_worker.base import GIVE_UPS, TaskContext, record_job_failure, tracked_task

log = structlog.get_logger("worker.jobs")
LOST = "The ingestion job was lost; upload the document again."


@tracked_task(
    app,
    "jobs.reap_stale",
    queue="maintenance",
    soft_time_limit=settings.maintenance_soft_time_limit,
    time_limit=settings.maintenance_time_limit,
)
def reap_stale(ctx: TaskContext) -> Any:
    """Re-send stale in-flight work; give up after max_attempts; fail abandoned documents."""
    rt = ctx.rt

    def give_up(entry: tracking.InFlight, reason: str) -> None:
        GIVE_UPS.get(entry.task, record_job_failure)(rt, entry.kwargs, reason, "WORKER_LOST")

    result = tracking.reap(
        app,
        rt.redis,
        stale_after=settings.stale_after_seconds,
        max_attempts=settings.max_attempts,
        give_up=give_up,
    )
    result["documents_failed"] = fail_abandoned_documents(ctx)
    return result


def fail_abandoned_documents(ctx: TaskContext) -> int:
    from knowledge_service.domain.documents import repository as repo
    from knowledge_service.domain.documents import service as documents

    rt = ctx.rt
    before = utcnow() - timedelta(seconds=settings.stale_after_seconds)
    stuck = rt.db(lambda s: repo.stuck_processing(s, before))
    inflight = {e.track_id for e in tracking.all_entries(rt.redis)}
    failed = 0
    for doc in stuck:
        job = rt.jobs.get(doc.job_id) if doc.job_id else None
        if doc.job_id in inflight or (job is not None and job.status in ("queued", "running")):
            continue
        rt.db(lambda s, d=doc.id: documents.mark_failed(s, d, LOST))
        failed += 1
    return failed
