"""Case tasks (queue `maintenance`): drop a deleted case's evidence files and knowledge
collection, and purge cases past their retention.

`cases.cleanup_case` is enqueued by the case service after a delete committed (an outbox
row records it durably). It calls the evidence and knowledge internal routes with a
service token acting for the case's owner; a service that is down is retried with
backoff, and when retries run out the outbox row is marked failed (loudly) and kept, so
the case service's sweeper retries it later. The tasks run this service's domain code
in the worker on its database (FM_CASE_DATABASE_URL), which the case service owns and
migrates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from case_service.config import Settings
from case_service.domain.cases.flows import (
    CleanupFailed,
    broker_enqueue,
    mark_cleanup_failed,
    run_cleanup,
    sweep_outbox,
)
from case_service.domain.cases.flows import purge_expired as purge
from case_service.storage import open_engine
from fm_common.clients.evidence import EvidenceClient
from fm_common.clients.knowledge import KnowledgeClient
from fm_common.db import create_sessionmaker
from fm_common.errors import Unavailable
from fm_common.settings import load_settings
from fm_common.tasks import Host, Kwargs, TaskContext, task

log = structlog.get_logger("worker.cases")


@dataclass(frozen=True)
class CaseDb:
    """The case service's settings and a sessionmaker on its database (per process)."""

    settings: Settings
    maker: async_sessionmaker[AsyncSession]


def _open(host: Host) -> CaseDb:
    settings = load_settings(Settings)

    async def build() -> async_sessionmaker[AsyncSession]:
        return create_sessionmaker(open_engine(settings.effective_database_url))

    return CaseDb(settings, host.run(build()))


def case_db(host: Host) -> CaseDb:
    return host.resource(_open)


def _give_up_cleanup(host: Host, kwargs: Kwargs, message: str, code: str) -> None:
    log.error("cases.cleanup_failed_for_good", case_id=kwargs.get("case_id"), code=code)
    maker = case_db(host).maker
    host.run(mark_cleanup_failed(maker, str(kwargs["case_id"]), f"{code}: {message}"))


@task("cases.cleanup_case", queue="maintenance", give_up=_give_up_cleanup)
def cleanup_case(ctx: TaskContext, case_id: str, owner_id: str) -> dict[str, Any]:
    """Delete the case's evidence files and knowledge collection; clear its outbox row."""
    host = ctx.host
    # The agent's redaction map (the case's originals, encrypted) goes with the case.
    host.peers.drop_redaction_map(case_id)
    maker = case_db(host).maker
    evidence = EvidenceClient(host.settings.evidence_url, host.http, retries=1)
    knowledge = KnowledgeClient(host.settings.knowledge_url, host.http, retries=1)

    async def drop_files(cid: str, token: str) -> None:
        await evidence.delete_case_files(cid, token=token)

    async def drop_collection(cid: str, token: str) -> None:
        await knowledge.delete_case_collection(cid, token=token)

    try:
        host.run(
            run_cleanup(
                maker,
                case_id=case_id,
                owner_id=owner_id,
                token_for=host.auth.service_token,
                drop_files=drop_files,
                drop_collection=drop_collection,
            )
        )
    except CleanupFailed as exc:
        # Transient for the task machinery: retried with backoff, then given up.
        raise Unavailable(str(exc), code="CLEANUP_PENDING") from exc
    return {"case_id": case_id, "cleaned": True}


@task("cases.purge_expired", queue="maintenance")
def purge_expired(ctx: TaskContext) -> dict[str, Any]:
    """Delete resolved/closed cases past FM_CASE_RETENTION_DAYS (like DELETE), and
    re-enqueue cleanups still pending in the outbox."""
    host = ctx.host
    db = case_db(host)
    send = broker_enqueue(host.settings.redis_url)
    retention = timedelta(days=db.settings.retention_days)
    purged = host.run(purge(db.maker, send, retention=retention))
    retry_after = timedelta(seconds=db.settings.outbox_retry_seconds)
    swept = host.run(sweep_outbox(db.maker, send, retry_after=retry_after))
    log.info("cases.purge_expired_done", purged=purged, requeued=swept)
    return {"purged": purged, "requeued": swept}


@task("cases.sweep_outbox", queue="maintenance")
def sweep_outbox_task(ctx: TaskContext) -> dict[str, Any]:
    """Re-enqueue cleanups whose last enqueue is older than the retry window."""
    host = ctx.host
    db = case_db(host)
    retry_after = timedelta(seconds=db.settings.outbox_retry_seconds)
    swept = host.run(
        sweep_outbox(db.maker, broker_enqueue(host.settings.redis_url), retry_after=retry_after)
    )
    return {"requeued": swept}
