"""Every query of the evidence tables (files, derived evidence, the unindex outbox).

Each user-facing read is scoped to an owner; the re-queue loops read across owners."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update

from evidence_service.domain.evidence.models import (
    DerivedEvidenceRow,
    EvidenceFileRow,
    EvidenceUnindexRow,
)
from fm_common.contracts.evidence import INDEXED_SOURCE_TYPES
from fm_common.db import Repository

SORT_COLUMNS = {
    "uploaded_at_turn": (EvidenceFileRow.uploaded_at_turn, EvidenceFileRow.uploaded_at),
    "filename": (EvidenceFileRow.filename,),
    "size": (EvidenceFileRow.size_bytes,),
    "uploaded_at": (EvidenceFileRow.uploaded_at,),
}


class EvidenceRepository(Repository[EvidenceFileRow]):
    """`get_owned` and `add` (flushed) come from the base; `delete` takes the file's
    derived evidence with it."""

    model = EvidenceFileRow

    async def find_by_hash(
        self, owner_id: str, case_id: str, content_hash: str
    ) -> EvidenceFileRow | None:
        return await self.session.scalar(
            select(EvidenceFileRow).where(
                EvidenceFileRow.owner_id == owner_id,
                EvidenceFileRow.case_id == case_id,
                EvidenceFileRow.content_hash == content_hash,
            )
        )

    async def list_case(
        self,
        owner_id: str,
        case_id: str,
        *,
        limit: int,
        offset: int,
        sort_by: str,
        descending: bool,
    ) -> tuple[Sequence[EvidenceFileRow], int]:
        scope = (EvidenceFileRow.owner_id == owner_id, EvidenceFileRow.case_id == case_id)
        total = await self.session.scalar(
            select(func.count()).select_from(EvidenceFileRow).where(*scope)
        )
        columns = SORT_COLUMNS[sort_by]
        order: list[ColumnElement[Any]] = [c.desc() if descending else c.asc() for c in columns]
        order.append(EvidenceFileRow.id.asc())  # a stable order for paging
        rows = await self.session.scalars(
            select(EvidenceFileRow).where(*scope).order_by(*order).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def delete(self, row: EvidenceFileRow) -> None:
        await self.session.execute(
            delete(DerivedEvidenceRow).where(DerivedEvidenceRow.file_id == row.id)
        )
        await super().delete(row)

    async def derived_of(self, file_id: str) -> Sequence[DerivedEvidenceRow]:
        rows = await self.session.scalars(
            select(DerivedEvidenceRow)
            .where(DerivedEvidenceRow.file_id == file_id)
            .order_by(DerivedEvidenceRow.collected_at_turn, DerivedEvidenceRow.created_at)
        )
        return rows.all()

    async def derived_counts(self, file_ids: Sequence[str]) -> dict[str, int]:
        if not file_ids:
            return {}
        rows = await self.session.execute(
            select(DerivedEvidenceRow.file_id, func.count())
            .where(DerivedEvidenceRow.file_id.in_(file_ids))
            .group_by(DerivedEvidenceRow.file_id)
        )
        return {file_id: int(n) for file_id, n in rows.all()}

    async def get_derived(self, evidence_id: str) -> DerivedEvidenceRow | None:
        return await self.session.get(DerivedEvidenceRow, evidence_id)

    async def add_derived(self, row: DerivedEvidenceRow) -> DerivedEvidenceRow:
        self.session.add(row)
        await self.session.flush()
        return row

    async def delete_case(self, owner_id: str, case_id: str) -> list[str]:
        """Delete the owner's rows of a case; the ids of the deleted rows."""
        await self.session.execute(
            delete(DerivedEvidenceRow).where(
                DerivedEvidenceRow.owner_id == owner_id, DerivedEvidenceRow.case_id == case_id
            )
        )
        result = await self.session.execute(
            delete(EvidenceFileRow)
            .where(EvidenceFileRow.owner_id == owner_id, EvidenceFileRow.case_id == case_id)
            .returning(EvidenceFileRow.id)
        )
        return [row[0] for row in result.all()]

    async def unqueued_text_files(
        self, uploaded_before: datetime, limit: int
    ) -> Sequence[EvidenceFileRow]:
        """Text files whose index task was never queued (the broker was down)."""
        rows = await self.session.scalars(
            select(EvidenceFileRow)
            .where(
                EvidenceFileRow.index_queued_at.is_(None),
                EvidenceFileRow.source_type.in_(sorted(INDEXED_SOURCE_TYPES)),
                EvidenceFileRow.uploaded_at < uploaded_before,
            )
            .order_by(EvidenceFileRow.uploaded_at)
            .limit(limit)
        )
        return rows.all()

    async def mark_queued(self, file_id: str, at: datetime) -> None:
        await self.session.execute(
            update(EvidenceFileRow).where(EvidenceFileRow.id == file_id).values(index_queued_at=at)
        )

    async def queued_index_count(self, owner_id: str) -> int:
        """How many of the owner's files wait for (or are in) their index task: the rank
        a newly queued one takes (fair ordering across users, ADR 0136)."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(EvidenceFileRow)
            .where(
                EvidenceFileRow.owner_id == owner_id,
                EvidenceFileRow.index_queued_at.is_not(None),
                EvidenceFileRow.analysis_status.in_(("pending", "processing")),
            )
        )
        return int(count or 0)

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        rows = await self.session.scalars(
            select(EvidenceFileRow.id).where(EvidenceFileRow.id.in_(list(ids)))
        )
        return set(rows.all())

    async def existing_owned_ids(self, owner_id: str, ids: Sequence[str]) -> set[str]:
        """The ids among `ids` that are files of `owner_id`."""
        if not ids:
            return set()
        rows = await self.session.scalars(
            select(EvidenceFileRow.id).where(
                EvidenceFileRow.owner_id == owner_id, EvidenceFileRow.id.in_(list(ids))
            )
        )
        return set(rows.all())

    async def pending_unindex(
        self, deleted_before: datetime, limit: int
    ) -> Sequence[EvidenceUnindexRow]:
        """Deleted text files whose unindex task was not handed to the broker yet."""
        rows = await self.session.scalars(
            select(EvidenceUnindexRow)
            .where(EvidenceUnindexRow.deleted_at < deleted_before)
            .order_by(EvidenceUnindexRow.deleted_at)
            .limit(limit)
        )
        return rows.all()

    async def unindex_queued(self, file_id: str) -> None:
        await self.session.execute(
            delete(EvidenceUnindexRow).where(EvidenceUnindexRow.file_id == file_id)
        )
