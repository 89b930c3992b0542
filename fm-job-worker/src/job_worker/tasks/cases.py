"""Case tasks: drop a deleted case's evidence files and knowledge collection, and purge
cases past their retention.

`cases.cleanup_case` is enqueued by the case service after a delete committed (an outbox
row records it durably). It calls the evidence and knowledge internal routes with a
service token acting for the case's owner; a service that is down is retried with
backoff, and when retries run out the outbox row is marked failed (loudly) and kept, so
the case service's sweeper retries it later. The tasks use the case service's domain
code on its database (FM_CASE_DATABASE_URL), which the case service owns and migrates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fm_common.errors import Unavailable
from fm_common.settings import load_settings
from job_worker.app import app, settings
from job_worker.base import TaskContext, tracked_task
from job_worker.runtime import Runtime

log = structlog.get_logger("worker.cases")

MAINTENANCE: dict[str, Any] = {
    "queue": "maintenance",
    "soft_time_limit": settings.maintenance_soft_time_limit,
    "time_limit": settings.maintenance_time_limit,
}


def case_db(rt: Runtime) -> tuple[Any, async_sessionmaker[AsyncSession]]:
    """The case service's settings and a sessionmaker on its database (per process)."""
    cached = getattr(rt, "_fm_case_db", None)
    if cached is None:
        from case_service.config import Settings as CaseSettings
        from case_service.storage import open_engine
        from fm_common.db import create_sessionmaker

        case_settings = load_settings(CaseSettings)

        async def build() -> async_sessionmaker[AsyncSession]:
            return create_sessionmaker(open_engine(case_settings.effective_database_url))

        cached = (case_settings, rt.run(build()))
        rt._fm_case_db = cached  # type: ignore[attr-defined]
    return cached


def _give_up_cleanup(rt: Runtime, kwargs: dict[str, Any], message: str, code: str) -> None:
    from case_service.domain.cases.flows import mark_cleanup_failed

    log.error("cases.cleanup_failed_for_good", case_id=kwargs.get("case_id"), code=code)
    _, maker = case_db(rt)
    rt.run(mark_cleanup_failed(maker, str(kwargs["case_id"]), f"{code}: {message}"))


def _drop_redaction_map(rt: Runtime, case_id: str) -> None:
    """The agent's redaction map (the case's originals, encrypted) goes with the case;
    Redis down: the cleanup is retried like any other step."""
    from agent_service.domain.privacy.redaction import delete_case_map

    try:
        rt.run(delete_case_map(rt.aredis, case_id))
    except Exception as exc:
        raise Unavailable("Redis is unavailable.", code="CLEANUP_PENDING") from exc


@tracked_task(app, "cases.cleanup_case", give_up=_give_up_cleanup, **MAINTENANCE)
def cleanup_case(ctx: TaskContext, case_id: str, owner_id: str) -> Any:
    """Delete the case's evidence files and knowledge collection; clear its outbox row."""
    from case_service.domain.cases.flows import CleanupFailed, run_cleanup
    from fm_common.clients.evidence import EvidenceClient
    from fm_common.clients.knowledge import KnowledgeClient

    rt = ctx.rt
    _drop_redaction_map(rt, case_id)
    _, maker = case_db(rt)
    evidence = EvidenceClient(rt.settings.evidence_url, rt.http, retries=1)
    knowledge = KnowledgeClient(rt.settings.knowledge_url, rt.http, retries=1)

    async def drop_files(cid: str, token: str) -> None:
        await evidence.delete_case_files(cid, token=token)

    async def drop_collection(cid: str, token: str) -> None:
        await knowledge.delete_case_collection(cid, token=token)

    try:
        rt.run(
            run_cleanup(
                maker,
                case_id=case_id,
                owner_id=owner_id,
                token_for=rt.auth.service_token,
                drop_files=drop_files,
                drop_collection=drop_collection,
            )
        )
    except CleanupFailed as exc:
        # Transient for the task machinery: retried with backoff, then given up.
        raise Unavailable(str(exc), code="CLEANUP_PENDING") from exc
    return {"case_id": case_id, "cleaned": True}


@tracked_task(app, "cases.purge_expired", **MAINTENANCE)
def purge_expired(ctx: TaskContext) -> Any:
    """Delete resolved/closed cases past FM_CASE_RETENTION_DAYS (like DELETE), and
    re-enqueue cleanups still pending in the outbox."""
    from case_service.domain.cases.flows import broker_enqueue, sweep_outbox
    from case_service.domain.cases.flows import purge_expired as purge

    rt = ctx.rt
    case_settings, maker = case_db(rt)
    send = broker_enqueue(rt.settings.redis_url)
    purged = rt.run(purge(maker, send, retention=timedelta(days=case_settings.retention_days)))
    swept = rt.run(
        sweep_outbox(maker, send, retry_after=timedelta(seconds=case_settings.outbox_retry_seconds))
    )
    log.info("cases.purge_expired_done", purged=purged, requeued=swept)
    return {"purged": purged, "requeued": swept}


@tracked_task(app, "cases.sweep_outbox", **MAINTENANCE)
def sweep_outbox_task(ctx: TaskContext) -> Any:
    """Re-enqueue cleanups whose last enqueue is older than the retry window."""
    from case_service.domain.cases.flows import broker_enqueue, sweep_outbox

    rt = ctx.rt
    case_settings, maker = case_db(rt)
    swept = rt.run(
        sweep_outbox(
            maker,
            broker_enqueue(rt.settings.redis_url),
            retry_after=timedelta(seconds=case_settings.outbox_retry_seconds),
        )
    )
    return {"requeued": swept}
