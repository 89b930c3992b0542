"""Reading, listing and deleting evidence files; every call is scoped to the caller.

Another user's file (or a file of another case) is NotFound, never Forbidden. Files on
disk are removed only after the metadata delete has committed (`_unlink_after_commit`),
so a failed transaction never leaves a row pointing at nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from evidence_service.domain.evidence.cases import CaseGate
from evidence_service.domain.evidence.models import (
    DerivedEvidenceRow,
    EvidenceFileRow,
    EvidenceUnindexRow,
)
from evidence_service.domain.evidence.repository import EvidenceRepository
from evidence_service.domain.evidence.storage import FileStore, storage_error
from fm_common.auth import Principal
from fm_common.blobs import BlobReader
from fm_common.contracts.evidence import (
    INDEXED_SOURCE_TYPES,
    AnalysisUpdate,
    DerivedEvidenceCreate,
    DerivedEvidenceSummary,
    EvidenceFile,
    EvidenceText,
    ExistingFiles,
    ExtractedText,
    TextLayout,
    UploadedFileDetailsResponse,
    UploadedFileMetadata,
    UploadedFilesList,
    text_is_extracted,
)
from fm_common.db import after_commit
from fm_common.errors import Conflict, Forbidden, NotFound

log = structlog.get_logger("evidence_service.evidence")

UNSAFE_INLINE_TYPES = frozenset(
    {"text/html", "image/svg+xml", "application/xhtml+xml", "application/xml", "text/xml"}
)


class FileNotFound(NotFound):
    code, detail = "FILE_NOT_FOUND", "No such file."


def as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def size_display(size: int) -> str:
    """'512 B', '2.3 KB', '48.0 MB' (powers of 1024, as the reference UI shows)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def to_contract(row: EvidenceFileRow, *, duplicate_of: str | None = None) -> EvidenceFile:
    return EvidenceFile(
        file_id=row.id,
        filename=row.filename,
        size_bytes=row.size_bytes,
        content_type=row.content_type,
        content_hash=row.content_hash,
        source_type=row.source_type,  # type: ignore[arg-type]
        case_id=row.case_id,
        uploaded_at=as_utc(row.uploaded_at),
        duplicate_of=duplicate_of,
        description=row.description,
        upload_source=row.upload_source,  # type: ignore[arg-type]
        uploaded_at_turn=row.uploaded_at_turn,
        analysis_status=row.analysis_status,  # type: ignore[arg-type]
        summary=row.summary,
        source_metadata=row.source_metadata,
    )


def to_derived(row: DerivedEvidenceRow) -> DerivedEvidenceSummary:
    return DerivedEvidenceSummary(
        evidence_id=row.evidence_id,
        summary=row.summary,
        category=row.category,
        collected_at_turn=row.collected_at_turn,
        source_type=row.source_type,
        primary_purpose=row.primary_purpose,
        related_hypothesis_ids=list(row.related_hypothesis_ids or []),
    )


def serving_type(content_type: str) -> str:
    """The Content-Type a download is served with: active content never as itself."""
    if content_type in UNSAFE_INLINE_TYPES:
        return "application/octet-stream"
    if content_type.startswith("text/"):
        return f"{content_type}; charset=utf-8"
    return content_type


def _unlink_after_commit(session: AsyncSession, store: FileStore, file_ids: Iterable[str]) -> None:
    """Remove the files once the delete has committed, in a worker thread (an S3 delete
    is a round trip the event loop must not wait on); never if it rolls back."""
    ids = list(file_ids)
    if ids:
        after_commit(session, functools.partial(store.remove_many, ids))


class EvidenceService:
    """Evidence files of one request (one session, one caller)."""

    def __init__(
        self, session: AsyncSession, store: FileStore, cases: CaseGate, retry_after: int = 5
    ) -> None:
        self.session = session
        self.retry_after = retry_after
        self.repo = EvidenceRepository(session)
        self.store = store
        self.cases = cases

    async def _owned(self, principal: Principal, file_id: str) -> EvidenceFileRow:
        row = await self.repo.get_owned(principal.user_id, file_id)
        if row is None:
            raise FileNotFound()
        return row

    async def get_file(self, principal: Principal, file_id: str) -> EvidenceFile:
        """The caller's file's metadata."""
        return to_contract(await self._owned(principal, file_id))

    async def open_content(
        self, principal: Principal, file_id: str
    ) -> tuple[EvidenceFile, BlobReader, int]:
        """The caller's file, open for reading (the caller closes it), and its size.

        The file is opened before the answer starts, so a concurrent delete cannot cut a
        download short: the open handle keeps the bytes readable.
        """
        row = await self._owned(principal, file_id)
        try:
            handle = await asyncio.to_thread(self.store.open, row.id)
        except OSError as exc:
            raise storage_error(exc, self.retry_after) from exc
        if handle is None:
            log.error("evidence.content_missing", file_id=row.id)
            raise FileNotFound("The file's content is missing.", code="CONTENT_MISSING")
        return to_contract(row), handle, row.size_bytes

    async def delete_file(self, principal: Principal, file_id: str) -> bool:
        """Delete the caller's file (row now, bytes once the delete has committed); True
        when it was text, whose chunks must then leave the case's collection."""
        row = await self._owned(principal, file_id)
        await self.repo.delete(row)
        text = row.source_type in INDEXED_SOURCE_TYPES
        if text:
            # In the delete's transaction: the unindex cannot be lost between the two.
            self.session.add(
                EvidenceUnindexRow(file_id=row.id, owner_id=row.owner_id, case_id=row.case_id)
            )
        _unlink_after_commit(self.session, self.store, [row.id])
        log.info("evidence.deleted", file_id=row.id, case_id=row.case_id)
        return text

    async def delete_case_files(self, principal: Principal, case_id: str) -> int:
        """Delete every file of the caller's case; idempotent (0 when none is left)."""
        ids = await self.repo.delete_case(principal.user_id, case_id)
        _unlink_after_commit(self.session, self.store, ids)
        log.info("evidence.case_files_deleted", case_id=case_id, count=len(ids))
        return len(ids)

    async def list_case_files(
        self,
        principal: Principal,
        case_id: str,
        *,
        limit: int,
        offset: int,
        sort_by: str,
        sort_order: str,
    ) -> UploadedFilesList:
        """A page of the case's files; NotFound when the case is not the caller's."""
        rows, total = await self.repo.list_case(
            principal.user_id,
            case_id,
            limit=limit,
            offset=offset,
            sort_by=sort_by,
            descending=sort_order == "desc",
        )
        if total == 0:
            # No file of the caller's in it: an empty case of theirs, or not theirs at all.
            await self.cases.ensure_case(case_id, principal)
        counts = await self.repo.derived_counts([row.id for row in rows])
        return UploadedFilesList(
            files=[
                UploadedFileMetadata(
                    file_id=row.id,
                    filename=row.filename,
                    size_bytes=row.size_bytes,
                    size_display=size_display(row.size_bytes),
                    uploaded_at_turn=row.uploaded_at_turn,
                    uploaded_at=as_utc(row.uploaded_at),
                    source_type=row.upload_source,
                    analysis_status=row.analysis_status,  # type: ignore[arg-type]
                    summary=row.summary,
                    source_metadata=row.source_metadata,
                    evidence_count=counts.get(row.id, 0),
                )
                for row in rows
            ],
            total_count=total,
            limit=limit,
            offset=offset,
            has_more=offset + len(rows) < total,
        )

    async def get_case_file(
        self, principal: Principal, case_id: str, file_id: str
    ) -> UploadedFileDetailsResponse:
        """One file of the caller's case, in the reference's details shape."""
        row = await self._owned(principal, file_id)
        if row.case_id != case_id:
            raise FileNotFound()
        derived = [to_derived(d) for d in await self.repo.derived_of(row.id)]
        return UploadedFileDetailsResponse(
            file_id=row.id,
            filename=row.filename,
            size_bytes=row.size_bytes,
            size_display=size_display(row.size_bytes),
            uploaded_at_turn=row.uploaded_at_turn,
            uploaded_at=as_utc(row.uploaded_at),
            upload_source=row.upload_source,
            evidence_count=len(derived),
            derived_evidence=derived,
            summary=row.summary,
            content_type=row.content_type,
            content_hash=row.content_hash,
        )

    async def add_derived(
        self, principal: Principal, file_id: str, body: DerivedEvidenceCreate
    ) -> DerivedEvidenceSummary:
        """Record what the agent concluded from the caller's file in a turn; a repeat of
        the same evidence_id returns the first record (a replayed turn writes once)."""
        row = await self._owned(principal, file_id)
        existing = await self.repo.get_derived(body.evidence_id)
        if existing is not None:
            if existing.file_id != row.id or existing.owner_id != row.owner_id:
                raise Conflict("This evidence_id is taken.", code="EVIDENCE_ID_TAKEN")
            return to_derived(existing)
        derived = await self.repo.add_derived(
            DerivedEvidenceRow(
                evidence_id=body.evidence_id,
                file_id=row.id,
                owner_id=row.owner_id,
                case_id=row.case_id,
                summary=body.summary,
                category=body.category,
                source_type=body.source_type,
                collected_at_turn=body.collected_at_turn,
                primary_purpose=body.primary_purpose,
                related_hypothesis_ids=list(body.related_hypothesis_ids),
            )
        )
        log.info("evidence.derived_added", file_id=row.id, turn=body.collected_at_turn)
        return to_derived(derived)

    async def existing_files(self, principal: Principal, file_ids: list[str]) -> ExistingFiles:
        """Which of `file_ids` are still files of the user a service token acts for (the
        worker's orphan sweep asks before removing a file's chunks). Service tokens only."""
        if not principal.is_service:
            raise Forbidden("Only services may ask which files exist.", code="SERVICE_ONLY")
        found = await self.repo.existing_owned_ids(principal.user_id, file_ids)
        return ExistingFiles(file_ids=[i for i in dict.fromkeys(file_ids) if i in found])

    async def set_analysis(
        self, principal: Principal, file_id: str, update: AnalysisUpdate
    ) -> EvidenceFile:
        """The indexer's report on a file (status, summary)."""
        row = await self._owned(principal, file_id)
        row.analysis_status = update.analysis_status
        if update.summary is not None:
            row.summary = update.summary
        await self.session.flush()
        return to_contract(row)

    async def set_text(self, principal: Principal, file_id: str, body: ExtractedText) -> None:
        """The worker stores the text it read from an image or office document (service
        tokens only, like the indexer's other reports)."""
        if not principal.is_service:
            raise Forbidden("Only services may store a file's text.", code="SERVICE_ONLY")
        row = await self._owned(principal, file_id)
        row.extracted_text = body.text
        row.text_layout = body.layout.model_dump() if body.layout is not None else None
        await self.session.flush()

    async def get_text(self, principal: Principal, file_id: str) -> EvidenceText:
        """The text read from the caller's file: ready, pending, failed, or none (a text
        file, whose bytes are its text)."""
        row = await self._owned(principal, file_id)
        if not text_is_extracted(row.source_type, row.content_type):
            return EvidenceText(file_id=row.id, status="none")
        if row.extracted_text is not None:
            layout = TextLayout.model_validate(row.text_layout) if row.text_layout else None
            return EvidenceText(
                file_id=row.id, status="ready", text=row.extracted_text, layout=layout
            )
        if row.analysis_status == "failed":
            return EvidenceText(file_id=row.id, status="failed", error=row.summary)
        return EvidenceText(file_id=row.id, status="pending")
