"""Document maintenance tasks (queue `maintenance`): a deleted case's collection, the
orphan sweep (beat), and documents whose ingestion was lost (for `jobs.reap_stale`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from fm_common.clients.evidence import EvidenceClient
from fm_common.errors import Unavailable
from fm_common.tasks import Host, TaskContext, task
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.documents.cleanup import purge_orphans as purge
from knowledge_service.domain.documents.repository import DocumentRepository
from knowledge_service.worker import knowledge

LOST = "The ingestion job was lost; upload the document again."


@task("knowledge.delete_case_collection", queue="maintenance")
def delete_case_collection(ctx: TaskContext, case_id: str, owner_id: str) -> dict[str, Any]:
    """Drop a case's collection, its documents and files (idempotent, owner-scoped)."""
    host = ctx.host
    k = knowledge(host)
    dropped = k.db(
        lambda s: documents.drop_case(
            s, case_id, owner_id, k.blobs, k.store, host.aredis, strict=False
        )
    )
    if dropped:
        k.bm25.drop(dropped)
    return {"case_id": case_id, "dropped": bool(dropped)}


@task("knowledge.purge_orphans", queue="maintenance")
def purge_orphans(ctx: TaskContext) -> dict[str, Any]:
    """Delete vectors, files and indexes whose document, case or evidence file no longer
    exists (evidence files as the evidence service answers; nothing without its answer)."""
    host = ctx.host
    k = knowledge(host)
    result = purge(
        k.settings,
        k.blobs,
        k.store,
        k.bm25,
        k.db,
        grace_seconds=host.settings.orphan_grace_seconds,
        now=time.time(),
        evidence_exists=evidence_exists(host),
    )
    for collection in result.pop("changed_collections", []):
        k.collection_changed(collection)
    return result


def evidence_exists(host: Host) -> Callable[[str, list[str]], set[str]]:
    """`exists(owner_id, file_ids)` -> the ids among them still files of `owner_id`.

    The evidence service scopes every answer to the user a token acts for, and a service
    token without a user has no access to user data (ADR 0002), so the question is asked
    per owner with a service token acting for that owner
    (`POST /internal/v1/evidence/existing`).

    Raises an FMError when it cannot answer (evidence or auth service down or timing out:
    Unavailable / GatewayTimeout; a user the auth service no longer knows: NotFound;
    credentials refused: Unauthorized); `purge_orphans` then deletes nothing for that owner.
    """
    # One attempt: the sweep runs again within the hour, and a POST is not retried anyway.
    client = EvidenceClient(host.settings.evidence_url, host.http, retries=0)

    def exists(owner_id: str, file_ids: list[str]) -> set[str]:
        try:
            token = host.service_token(owner_id)
            return set(host.run(client.existing(file_ids, token=token)).file_ids)
        except httpx.TransportError as exc:  # the ones the client does not map already
            raise Unavailable(
                "The evidence service is unavailable.", code="EVIDENCE_UNAVAILABLE"
            ) from exc

    return exists


def fail_abandoned_documents(
    host: Host, before: datetime, in_flight: Callable[[], set[str]]
) -> int:
    """Fail the documents still `processing` since `before` whose job is neither in
    flight (`in_flight()`: the track ids of work in flight) nor queued or running; how
    many."""
    k = knowledge(host)
    stuck = k.db(lambda s: DocumentRepository(s).stuck_processing(before))
    inflight = in_flight()
    failed = 0
    for doc in stuck:
        job = host.jobs.get(doc.job_id) if doc.job_id else None
        if doc.job_id in inflight or (job is not None and job.status in ("queued", "running")):
            continue
        k.db(partial(documents.mark_failed, document_id=doc.id, reason=LOST))
        failed += 1
    return failed
