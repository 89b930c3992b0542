"""`jobs.reap_stale` (beat): in-flight work that went quiet is redone or failed.

Also has the knowledge service fail documents left `processing` whose job no longer
exists or already ended (e.g. Redis lost its data), so no document waits forever.
"""

from __future__ import annotations

from datetime import timedelta

from fm_common.db import utcnow
from fm_common.tasks import TASKS, record_job_failure, task
from job_worker import tracking
from job_worker.base import Context
from knowledge_service.domain.documents.tasks import fail_abandoned_documents


@task("jobs.reap_stale", queue="maintenance")
def reap_stale(ctx: Context) -> dict[str, int]:
    """Re-send stale in-flight work; give up after max_attempts; fail abandoned documents."""
    rt = ctx.rt
    settings = rt.settings

    def give_up(entry: tracking.InFlight, reason: str) -> None:
        spec = TASKS.get(entry.task)
        (spec.give_up if spec else record_job_failure)(rt, entry.kwargs, reason, "WORKER_LOST")

    result = tracking.reap(
        rt.app,
        rt.redis,
        stale_after=settings.stale_after_seconds,
        max_attempts=settings.max_attempts,
        give_up=give_up,
    )
    before = utcnow() - timedelta(seconds=settings.stale_after_seconds)
    result["documents_failed"] = fail_abandoned_documents(
        rt, before, lambda: {e.track_id for e in tracking.all_entries(rt.redis)}
    )
    return result
