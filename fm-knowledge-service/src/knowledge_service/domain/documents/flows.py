"""The upload flow: store the original, record the document and its job, then enqueue.

The ingestion task is enqueued only after the document row is committed (the worker
must find it). If the queue is down the upload is undone and answered 503, so nothing
is left `processing` with no job to finish it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import UploadFile
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fm_common.auth import Principal
from fm_common.blobs import BlobStore, storage_error
from fm_common.contracts.knowledge import DocumentAccepted, JobRef, Scope
from fm_common.errors import (
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from fm_common.jobs import JobStore, enqueue, fair_priority
from knowledge_service.config import ALLOWED_EXTENSIONS, Settings
from knowledge_service.domain.documents import service
from knowledge_service.domain.documents.models import Document
from knowledge_service.domain.documents.repository import DocumentRepository
from knowledge_service.domain.vectors.store import collection_for

log = structlog.get_logger("knowledge.upload")

INGEST_TASK = "knowledge.ingest_document"
INGEST_QUEUE = "ingest"
READ_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class UploadForm:
    title: str
    document_type: str
    scope: Scope
    case_id: str | None
    category: str | None
    tags: list[str]
    description: str | None
    source_url: str | None


def job_location(job_id: str) -> str:
    return f"/api/v1/knowledge/jobs/{job_id}"


def _check_extension(filename: str) -> None:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if ext and ext not in ALLOWED_EXTENSIONS:
        raise UnsupportedMediaType(
            f"Files of type .{ext} are not accepted; allowed: "
            f"{', '.join('.' + e for e in ALLOWED_EXTENSIONS)}.",
            code="UNSUPPORTED_FILE_TYPE",
        )


async def _store_file(
    upload: UploadFile, settings: Settings, blobs: BlobStore, document_id: str
) -> tuple[int, str]:
    """Stream the upload into the blob store (hashed as it goes; on S3 each 8 MiB part is
    sent while the rest is read); (size, sha256). 413 over the limit, 422 when empty,
    503 (507 for a full disk) when the store fails; nothing is kept then."""
    writer = blobs.begin(service.file_key(document_id))
    try:
        while block := await upload.read(READ_BLOCK):
            if writer.size + len(block) > settings.max_upload_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {settings.max_upload_bytes} bytes."
                )
            await asyncio.to_thread(writer.write, block)
        if writer.size == 0:
            raise Unprocessable("The file is empty.", code="EMPTY_FILE")
        await asyncio.to_thread(writer.commit)
    except OSError as exc:
        raise storage_error(exc, settings.retry_after_seconds) from exc
    finally:
        writer.abort(wait=False)  # a no-op once committed
    return writer.size, writer.sha256


async def _verify_case(principal: Principal, case_id: str, settings: Settings, http: Any) -> None:
    """404 unless the case service says the case is the caller's (its internal route,
    with a service token acting for the caller: ADR 0135)."""
    if not settings.verify_case_ownership:
        return
    from fm_common.clients.auth import service_credential
    from fm_common.clients.case import CaseClient

    client = CaseClient(settings.case_url, http, retry_after=settings.retry_after_seconds)
    token = await service_credential(settings, http).token_for(principal)
    await client.get_case(case_id, token=token)


async def _check_pending(
    maker: async_sessionmaker[AsyncSession], settings: Settings, user_id: str
) -> int:
    """429 TOO_MANY_PENDING while the user already has this much waiting for the worker
    (issue 16 item 5: one user's indexing held both worker children for 7 minutes);
    else how many documents of theirs wait (the new one's rank, ADR 0136)."""
    async with maker() as session:
        count, size = await DocumentRepository(session).pending_of(user_id)
    if (
        count >= settings.max_pending_documents_per_user
        or size >= settings.max_pending_bytes_per_user
    ):
        raise RateLimited(
            30,
            "You have too many documents waiting to be processed; upload more when some are done.",
            code="TOO_MANY_PENDING",
        )
    return count


async def upload_document(
    *,
    maker: async_sessionmaker[AsyncSession],
    redis: Any,
    http: Any,
    settings: Settings,
    blobs: BlobStore,
    principal: Principal,
    upload: UploadFile,
    form: UploadForm,
) -> DocumentAccepted:
    """Accept an upload for background ingestion (202)."""
    if form.scope == "global" and not principal.is_admin:
        raise Forbidden("Uploading to the global knowledge base needs the admin role.")
    if form.scope == "case":
        if not form.case_id:
            raise Unprocessable("A case scope upload needs a case_id.", code="CASE_ID_REQUIRED")
        await _verify_case(principal, form.case_id, settings, http)
    filename = (upload.filename or "upload.txt").replace("/", "_").replace("\\", "_")[-300:]
    _check_extension(filename)
    rank = await _check_pending(maker, settings, principal.user_id)

    document_id = str(uuid.uuid4())
    job_id = str(uuid.uuid4())
    size, sha256 = await _store_file(upload, settings, blobs, document_id)
    case_id = form.case_id if form.scope == "case" else None
    kwargs = {"document_id": document_id, "job_id": job_id}
    jobs = JobStore(redis)
    try:
        await jobs.create(
            INGEST_TASK,
            principal.user_id,
            job_id=job_id,
            resource_id=document_id,
            payload={"task": INGEST_TASK, "queue": INGEST_QUEUE, "kwargs": kwargs},
        )
        async with maker() as session:
            if case_id:
                await service.claim_case(session, case_id, principal.user_id)
            await DocumentRepository(session).add(
                Document(
                    id=document_id,
                    owner_id=principal.user_id,
                    scope=form.scope,
                    case_id=case_id,
                    collection=collection_for(form.scope, principal.user_id, case_id),
                    title=form.title,
                    document_type=form.document_type,
                    category=form.category,
                    tags=form.tags,
                    tags_index=service.tags_index(form.tags),
                    description=form.description,
                    source_url=form.source_url,
                    filename=filename,
                    content_type=upload.content_type,
                    size_bytes=size,
                    sha256=sha256,
                    status="processing",
                    job_id=job_id,
                ),
            )
            await session.commit()
    except BaseException:
        await asyncio.to_thread(service.remove_files, blobs, document_id)
        raise
    try:
        await asyncio.to_thread(
            enqueue,
            settings.redis_url,
            INGEST_TASK,
            queue=INGEST_QUEUE,
            kwargs=kwargs,
            task_id=job_id,
            priority=fair_priority(rank),
        )
    except Exception as exc:
        # The queue is down: undo the upload so no document waits for a job never sent.
        log.warning("document.enqueue_failed", document_id=document_id, error=repr(exc))
        async with maker() as session:
            repo = DocumentRepository(session)
            doc = await repo.get(document_id)
            if doc is not None:
                await repo.delete(doc)
            await session.commit()
        await asyncio.to_thread(service.remove_files, blobs, document_id)
        await jobs.update(job_id, status="failed", error={"message": "queue unavailable"})
        raise Unavailable(
            "The job queue is unavailable; upload again later.",
            code="QUEUE_UNAVAILABLE",
            retry_after=settings.retry_after_seconds,
        ) from exc
    log.info(
        "document.accepted", document_id=document_id, scope=form.scope, size=size, job_id=job_id
    )
    return DocumentAccepted(
        document_id=document_id,
        status="processing",
        job=JobRef(job_id=job_id, status="queued", location=job_location(job_id)),
    )
