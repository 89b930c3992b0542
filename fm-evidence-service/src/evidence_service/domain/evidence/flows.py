"""The upload: stream to a temp file, prove the case is the caller's, place the file,
record it, then queue its indexing. And the loops that heal what a crash or a down broker
left behind (re-queue, sweep).

The upload runs its own short transactions instead of the request session: the file must
be renamed into place before its row commits, removed again if the row does not commit,
and the index task queued only after the commit. A racing upload of the same bytes loses
on the (owner, case, hash) unique constraint and answers with the winner's file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import kombu.exceptions
import redis.exceptions
import structlog
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from evidence_service.config import Settings
from evidence_service.domain.evidence.cases import CaseGate, check_case_id
from evidence_service.domain.evidence.content import classify, decode_sample
from evidence_service.domain.evidence.models import EvidenceFileRow
from evidence_service.domain.evidence.receive import ReceivedForm, UploadReceiver
from evidence_service.domain.evidence.repository import EvidenceRepository
from evidence_service.domain.evidence.service import to_contract
from evidence_service.domain.evidence.storage import FileStore, storage_error
from fm_common.auth import Principal
from fm_common.contracts.evidence import (
    INDEX_QUEUE,
    INDEX_TASK,
    INDEXED_SOURCE_TYPES,
    UNINDEX_QUEUE,
    UNINDEX_TASK,
    EvidenceFile,
    UploadSource,
)
from fm_common.errors import Unprocessable
from fm_common.jobs import enqueue, fair_priority

log = structlog.get_logger("evidence_service.flows")

UPLOADS = Counter("fm_evidence_uploads_total", "Evidence uploads accepted, by outcome", ["outcome"])
UPLOADED_BYTES = Counter("fm_evidence_uploaded_bytes_total", "Bytes of evidence stored")
INDEX_ENQUEUE_FAILURES = Counter(
    "fm_evidence_index_enqueue_failures_total", "Index tasks that could not be queued"
)

_ENQUEUE_ERRORS = (kombu.exceptions.KombuError, redis.exceptions.RedisError, OSError)


class UploadForm(BaseModel):
    """The text fields of POST /api/v1/evidence (the file part is streamed apart)."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    description: str | None = Field(default=None, max_length=2000)
    upload_source: UploadSource = "file_upload"
    uploaded_at_turn: int = Field(default=0, ge=0, le=1_000_000)
    source_url: str | None = Field(default=None, max_length=2000)


def _form(fields: dict[str, str]) -> UploadForm:
    data = {k: v for k, v in fields.items() if v != "" or k == "case_id"}
    try:
        form = UploadForm.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "form"
        if first["type"] == "missing":
            raise Unprocessable(f"The form field '{where}' is required.") from None
        raise Unprocessable(f"The form field '{where}' is not valid: {first['msg']}.") from None
    form.case_id = check_case_id(form.case_id)
    return form


@dataclass(frozen=True)
class UploadResult:
    file: EvidenceFile
    created: bool


@dataclass
class Uploads:
    """Everything an upload needs; built once per app."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    store: FileStore
    cases: CaseGate

    async def upload(
        self,
        principal: Principal,
        content_type: str | None,
        content_length: str | None,
        body: AsyncIterator[bytes],
    ) -> UploadResult:
        """Store an uploaded file in the caller's case (or find its byte-identical twin)."""
        checked: set[str] = set()

        async def on_field(name: str, value: str) -> None:
            # A case_id sent before the file is checked before the file is read.
            if name == "case_id":
                case_id = check_case_id(value)
                await self.cases.ensure_case(case_id, principal)
                checked.add(case_id)

        receiver = UploadReceiver(self.settings, self.store, on_field)
        received = await receiver.receive(content_type, content_length, body)
        try:
            form = _form(received.fields)
            if form.case_id not in checked:
                await self.cases.ensure_case(form.case_id, principal.token)
        except BaseException:
            received.file.temp.abort(wait=False)
            raise
        # Shielded: once the bytes are complete, a client that goes away no longer decides
        # whether the file and its row exist (_store finishes, and drops the temp file).
        return await asyncio.shield(self._store(principal, form, received))

    async def _store(
        self, principal: Principal, form: UploadForm, received: ReceivedForm
    ) -> UploadResult:
        try:
            return await self._place_and_record(principal, form, received)
        finally:
            # A no-op once placed; a duplicate's upload is dropped (in the background
            # when there is network work, S3).
            received.file.temp.abort(wait=False)

    async def _place_and_record(
        self, principal: Principal, form: UploadForm, received: ReceivedForm
    ) -> UploadResult:
        upload = received.file
        content_hash = upload.temp.sha256
        existing = await self._find(principal.user_id, form.case_id, content_hash)
        if existing is not None:
            return self._duplicate(existing)
        try:
            file_id = await asyncio.to_thread(self.store.place, upload.temp)
        except OSError as exc:
            raise storage_error(exc, self.settings.retry_after_seconds) from exc
        row = EvidenceFileRow(
            id=file_id,
            owner_id=principal.user_id,
            case_id=form.case_id,
            filename=upload.filename,
            description=form.description,
            size_bytes=upload.temp.size,
            content_type=upload.content_type,
            content_hash=content_hash,
            source_type=classify(decode_sample(upload.sample), upload.filename, upload.detected),
            upload_source=form.upload_source,
            uploaded_at_turn=form.uploaded_at_turn,
            source_metadata={"source_url": form.source_url} if form.source_url else None,
            analysis_status="pending",
            uploaded_at=datetime.now(UTC),
        )
        try:
            async with self.sessionmaker() as session, session.begin():
                await EvidenceRepository(session).add(row)
        except IntegrityError:
            await asyncio.to_thread(self.store.remove, file_id)
            existing = await self._find(principal.user_id, form.case_id, content_hash)
            if existing is None:
                raise
            return self._duplicate(existing)
        except Exception:
            await asyncio.to_thread(self.store.remove, file_id)
            raise
        UPLOADS.labels("stored").inc()
        UPLOADED_BYTES.inc(row.size_bytes)
        log.info(
            "evidence.uploaded",
            file_id=file_id,
            case_id=row.case_id,
            size_bytes=row.size_bytes,
            source_type=row.source_type,
        )
        if row.source_type in INDEXED_SOURCE_TYPES and self.settings.index_uploads:
            await queue_index(self.settings, self.sessionmaker, row)
        return UploadResult(file=to_contract(row), created=True)

    async def _find(self, owner_id: str, case_id: str, content_hash: str) -> EvidenceFileRow | None:
        async with self.sessionmaker() as session:
            return await EvidenceRepository(session).find_by_hash(owner_id, case_id, content_hash)

    def _duplicate(self, existing: EvidenceFileRow) -> UploadResult:
        UPLOADS.labels("duplicate").inc()
        log.info("evidence.duplicate", file_id=existing.id, case_id=existing.case_id)
        return UploadResult(file=to_contract(existing, duplicate_of=existing.id), created=False)


async def queue_index(
    settings: Settings, maker: async_sessionmaker[AsyncSession], row: EvidenceFileRow
) -> bool:
    """Queue knowledge.index_evidence for a stored file; False (and logged) when the
    broker is down: the file stays stored and the re-queue loop tries again. Its priority
    is its rank among the owner's queued files, so one user's many files do not hold
    another user's first (ADR 0136)."""
    kwargs = {"file_id": row.id, "case_id": row.case_id, "owner_id": row.owner_id}
    async with maker() as session:
        rank = await EvidenceRepository(session).queued_index_count(row.owner_id)
    try:
        await asyncio.to_thread(
            enqueue,
            settings.effective_broker_url,
            INDEX_TASK,
            queue=INDEX_QUEUE,
            kwargs=kwargs,
            priority=fair_priority(rank),
        )
    except _ENQUEUE_ERRORS as exc:
        INDEX_ENQUEUE_FAILURES.inc()
        log.warning("evidence.index_enqueue_failed", file_id=row.id, error=repr(exc))
        return False
    async with maker() as session, session.begin():
        await EvidenceRepository(session).mark_queued(row.id, datetime.now(UTC))
    return True


async def queue_unindex(
    settings: Settings,
    maker: async_sessionmaker[AsyncSession],
    file_id: str,
    case_id: str,
    owner_id: str,
) -> bool:
    """Queue knowledge.unindex_evidence for a file whose delete has committed and clear its
    outbox row; False (and logged) when the broker is down: the re-queue loop sends it."""
    kwargs = {"file_id": file_id, "case_id": case_id, "owner_id": owner_id}
    try:
        await asyncio.to_thread(
            enqueue, settings.effective_broker_url, UNINDEX_TASK, queue=UNINDEX_QUEUE, kwargs=kwargs
        )
    except _ENQUEUE_ERRORS as exc:
        INDEX_ENQUEUE_FAILURES.inc()
        log.warning("evidence.unindex_enqueue_failed", file_id=file_id, error=repr(exc))
        return False
    async with maker() as session, session.begin():
        await EvidenceRepository(session).unindex_queued(file_id)
    return True


async def requeue_unindex(
    settings: Settings, maker: async_sessionmaker[AsyncSession], limit: int = 100
) -> int:
    """Queue the unindex task of deleted files whose first attempt found the broker down."""
    before = datetime.now(UTC) - timedelta(seconds=settings.requeue_after_seconds)
    async with maker() as session:
        rows = await EvidenceRepository(session).pending_unindex(before, limit)
    queued = 0
    for row in rows:
        if not await queue_unindex(settings, maker, row.file_id, row.case_id, row.owner_id):
            break
        queued += 1
    if queued:
        log.info("evidence.unindex_requeued", count=queued)
    return queued


async def requeue_unindexed(
    settings: Settings, maker: async_sessionmaker[AsyncSession], limit: int = 100
) -> int:
    """Queue the index task of text files whose first attempt found the broker down."""
    before = datetime.now(UTC) - timedelta(seconds=settings.requeue_after_seconds)
    async with maker() as session:
        rows = await EvidenceRepository(session).unqueued_text_files(before, limit)
    queued = 0
    for row in rows:
        if not await queue_index(settings, maker, row):
            break
        queued += 1
    if queued:
        log.info("evidence.index_requeued", count=queued)
    return queued


async def sweep_orphans(
    settings: Settings, maker: async_sessionmaker[AsyncSession], store: FileStore
) -> int:
    """Remove crash leftovers: stale temp files, and stored files without a row."""
    removed = await asyncio.to_thread(store.sweep_temp, settings.sweep_after_seconds)
    ids = await asyncio.to_thread(store.stored_ids, settings.sweep_after_seconds)
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        async with maker() as session:
            known = await EvidenceRepository(session).existing_ids(batch)
        for file_id in set(batch) - known:
            await asyncio.to_thread(store.remove, file_id)
            removed += 1
    if removed:
        log.info("evidence.swept", removed=removed)
    return removed
