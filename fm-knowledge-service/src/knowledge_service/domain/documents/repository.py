"""Every query on documents and case collections."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from fm_common.db import Repository, utcnow
from knowledge_service.domain.documents.models import CaseCollection, Document


def _visible(user_id: str) -> Any:
    """Own personal and case documents, and every global one."""
    return or_(Document.scope == "global", Document.owner_id == user_id)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _claimable(claimer: str, stale_before: datetime) -> Any:
    """Waiting for ingestion, and free, already ours, or held by a run long dead."""
    return and_(
        Document.status == "processing",
        or_(
            Document.claimed_by.is_(None),
            Document.claimed_by == claimer,
            Document.claimed_at < stale_before,
        ),
    )


class DocumentRepository(Repository[Document]):
    """The queries on documents; `get`, `add` (flushed) and `delete` come from the base.
    Reads for a user go through `get_visible` (global documents are everyone's)."""

    model = Document

    async def get_visible(self, document_id: str, user_id: str) -> Document | None:
        stmt = select(Document).where(Document.id == document_id, _visible(user_id))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_visible(
        self,
        user_id: str,
        *,
        scope: str | None,
        document_type: str | None,
        tags: Sequence[str],
        q: str | None,
        case_id: str | None,
        limit: int,
        offset: int,
        status: str | None = None,
    ) -> tuple[list[Document], int]:
        conds: list[Any] = [_visible(user_id)]
        if status:
            conds.append(Document.status == status)
        if scope:
            conds.append(Document.scope == scope)
        if document_type:
            conds.append(Document.document_type == document_type)
        if case_id:
            conds.append(Document.case_id == case_id)
        for tag in tags:
            conds.append(Document.tags_index.like(f"%,{_escape_like(tag)},%", escape="\\"))
        if q:
            pattern = f"%{_escape_like(q.lower())}%"
            conds.append(
                or_(
                    func.lower(Document.title).like(pattern, escape="\\"),
                    func.lower(func.coalesce(Document.description, "")).like(pattern, escape="\\"),
                    func.lower(Document.filename).like(pattern, escape="\\"),
                )
            )
        where = and_(*conds)
        total = (
            await self.session.execute(select(func.count()).select_from(Document).where(where))
        ).scalar_one()
        stmt = (
            select(Document)
            .where(where)
            .order_by(Document.created_at.desc(), Document.id)
            .limit(limit)
            .offset(offset)
        )
        rows = list((await self.session.execute(stmt)).scalars())
        return rows, int(total)

    async def pending_of(self, owner_id: str) -> tuple[int, int]:
        """(documents, bytes of originals) of `owner_id` still waiting for ingestion."""
        row = (
            await self.session.execute(
                select(func.count(), func.coalesce(func.sum(Document.size_bytes), 0)).where(
                    Document.owner_id == owner_id, Document.status == "processing"
                )
            )
        ).one()
        return int(row[0]), int(row[1])

    async def case_documents(self, case_id: str, owner_id: str) -> list[Document]:
        stmt = select(Document).where(Document.case_id == case_id, Document.owner_id == owner_id)
        return list((await self.session.execute(stmt)).scalars())

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        stmt = select(Document.id).where(Document.id.in_(list(ids)))
        return set((await self.session.execute(stmt)).scalars())

    async def all_ids(self) -> set[str]:
        return set((await self.session.execute(select(Document.id))).scalars())

    async def stuck_processing(self, before: datetime) -> list[Document]:
        stmt = select(Document).where(Document.status == "processing", Document.updated_at < before)
        return list((await self.session.execute(stmt)).scalars())

    async def claim(
        self, document_id: str, claimer: str, now: datetime, stale_before: datetime
    ) -> bool:
        """Compare-and-set the document's claim; False when someone else holds it."""
        stmt = (
            update(Document)
            .where(Document.id == document_id, _claimable(claimer, stale_before))
            .values(claimed_by=claimer, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        result: Any = await self.session.execute(stmt)
        return bool(result.rowcount == 1)

    async def claim_candidates(
        self, exclude_id: str, claimer: str, stale_before: datetime, limit: int
    ) -> list[Document]:
        """The newest documents another ingestion run could take into its batch: tasks are
        taken from the queue oldest first, so the next ones find their documents still free,
        and the tasks of documents already in a batch come last, when the work is done."""
        stmt = (
            select(Document)
            .where(Document.id != exclude_id, _claimable(claimer, stale_before))
            .order_by(Document.created_at.desc(), Document.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def oldest_of_each_owner(
        self, exclude_id: str, claimer: str, stale_before: datetime, limit: int
    ) -> list[Document]:
        """Each owner's oldest waiting document (oldest owners first), so a batch can serve
        every user who waits and not only the one with the most (or newest) uploads."""
        rank = (
            func.row_number()
            .over(partition_by=Document.owner_id, order_by=(Document.created_at, Document.id))
            .label("rank")
        )
        ranked = (
            select(Document.id.label("id"), rank)
            .where(Document.id != exclude_id, _claimable(claimer, stale_before))
            .subquery()
        )
        stmt = (
            select(Document)
            .join(ranked, ranked.c.id == Document.id)
            .where(ranked.c.rank == 1)
            .order_by(Document.created_at, Document.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def held_claims(self, claimer: str, keep_id: str) -> list[Document]:
        stmt = select(Document).where(
            Document.claimed_by == claimer, Document.id != keep_id, Document.status == "processing"
        )
        return list((await self.session.execute(stmt)).scalars())

    async def release_claims(self, claimer: str, keep_id: str) -> list[Document]:
        """Unclaim what `claimer` holds besides `keep_id` and is still waiting; those documents."""
        docs = await self.held_claims(claimer, keep_id)
        if docs:
            await self.session.execute(
                update(Document)
                .where(Document.id.in_([d.id for d in docs]), Document.claimed_by == claimer)
                .values(claimed_by=None, claimed_at=None)
                .execution_options(synchronize_session=False)
            )
        return docs

    async def set_embedding_model(self, collection: str, model: str) -> None:
        """Record the model every document of `collection` is now embedded with."""
        await self.session.execute(
            update(Document).where(Document.collection == collection).values(embedding_model=model)
        )

    async def in_collection(self, collection: str) -> list[Document]:
        stmt = select(Document).where(Document.collection == collection)
        return list((await self.session.execute(stmt)).scalars())


class CaseCollectionRepository(Repository[CaseCollection]):
    """Who owns each case collection (`get(case_id)` from the base)."""

    model = CaseCollection
    id_column = "case_id"

    async def claim(self, case_id: str, owner_id: str) -> CaseCollection:
        """The case's ownership record, created for `owner_id` when absent."""
        record = await self.session.get(CaseCollection, case_id)
        if record is None:
            record = CaseCollection(case_id=case_id, owner_id=owner_id, created_at=utcnow())
            self.session.add(record)
            await self.session.flush()
        return record

    async def drop(self, case_id: str) -> None:
        await self.session.execute(delete(CaseCollection).where(CaseCollection.case_id == case_id))

    async def ids(self) -> set[str]:
        return set((await self.session.execute(select(CaseCollection.case_id))).scalars())
