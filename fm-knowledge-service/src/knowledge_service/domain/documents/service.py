"""Document rules: visibility, listing, reading, deleting, case collections."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from fm_common.auth import Principal
from fm_common.blobs import BlobNotFound, BlobStore
from fm_common.contracts.knowledge import DocumentPage, KnowledgeDocument
from fm_common.db import utcnow
from fm_common.errors import Forbidden, NotFound
from knowledge_service.domain.documents.models import Document
from knowledge_service.domain.documents.repository import (
    CaseCollectionRepository,
    DocumentRepository,
)
from knowledge_service.domain.vectors.bm25 import bump_version
from knowledge_service.domain.vectors.store import VectorStore, case_collection

log = structlog.get_logger("knowledge.documents")

# Characters of extracted text returned as `content` by GET (the whole text is on disk).
MAX_CONTENT_CHARS = 1_000_000


class DocumentNotFound(NotFound):
    code, detail = "DOCUMENT_NOT_FOUND", "Document not found."


class CaseNotFound(NotFound):
    code, detail = "CASE_NOT_FOUND", "Case not found."


def tags_index(tags: list[str]) -> str:
    return "," + ",".join(tags) + ("," if tags else "")


# Keys in the knowledge blob store (fm_common.blobs): the original and its extracted text.
def file_key(document_id: str) -> str:
    return f"files/{document_id}"


def text_key(document_id: str) -> str:
    return f"text/{document_id}.txt"


def _iso(value: datetime) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def to_contract(doc: Document, content: str = "") -> KnowledgeDocument:
    return KnowledgeDocument(
        document_id=doc.id,
        title=doc.title,
        content=content,
        document_type=doc.document_type,
        category=doc.category,
        tags=list(doc.tags or []),
        source_url=doc.source_url,
        description=doc.description,
        scope=doc.scope,  # type: ignore[arg-type]
        case_id=doc.case_id,
        owner_id=doc.owner_id,
        status=doc.status,  # type: ignore[arg-type]
        error=doc.error,
        chunk_count=doc.chunk_count,
        filename=doc.filename,
        content_type=doc.content_type,
        size_bytes=doc.size_bytes,
        embedding_model=doc.embedding_model,
        metadata={"collection": doc.collection, "sha256": doc.sha256, "job_id": doc.job_id},
        created_at=_iso(doc.created_at),
        updated_at=_iso(doc.updated_at),
    )


async def list_documents(
    session: AsyncSession,
    principal: Principal,
    *,
    scope: str | None,
    document_type: str | None,
    tags: list[str],
    q: str | None,
    case_id: str | None,
    limit: int,
    offset: int,
    status: str | None = None,
) -> DocumentPage:
    """Documents the caller may read: own personal and case ones, and every global one."""
    rows, total = await DocumentRepository(session).list_visible(
        principal.user_id,
        scope=scope,
        document_type=document_type,
        tags=tags,
        q=q,
        case_id=case_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return DocumentPage(
        documents=[to_contract(d, d.preview or "") for d in rows],
        total_count=total,
        limit=limit,
        offset=offset,
        has_more=offset + len(rows) < total,
    )


async def get_document(
    session: AsyncSession, principal: Principal, document_id: str, blobs: BlobStore
) -> KnowledgeDocument:
    """One visible document with its extracted text; 404 for anything else."""
    doc = await DocumentRepository(session).get_visible(document_id, principal.user_id)
    if doc is None:
        raise DocumentNotFound()
    content = ""
    if doc.status == "processed":
        content = await asyncio.to_thread(_read_text, blobs, doc.id)
    return to_contract(doc, content)


def _read_text(blobs: BlobStore, document_id: str) -> str:
    try:
        # UTF-8 takes at most 4 bytes a character; a character cut at the end is dropped.
        data = blobs.read(text_key(document_id), max_bytes=4 * MAX_CONTENT_CHARS)
    except BlobNotFound:
        return ""
    return data.decode("utf-8", errors="ignore")[:MAX_CONTENT_CHARS]


async def delete_document(
    session: AsyncSession,
    principal: Principal,
    document_id: str,
    blobs: BlobStore,
    store: VectorStore,
    redis: Any,
) -> None:
    """Delete a document, its vectors (first: if Chroma is down nothing is deleted) and files."""
    doc = await DocumentRepository(session).get_visible(document_id, principal.user_id)
    if doc is None:
        raise DocumentNotFound()
    if doc.scope == "global" and not principal.is_admin:
        raise Forbidden("Deleting a global document needs the admin role.")
    if doc.scope != "global" and doc.owner_id != principal.user_id:
        raise DocumentNotFound()
    await asyncio.to_thread(store.delete_document, doc.collection, doc.id)
    collection = doc.collection
    await DocumentRepository(session).delete(doc)
    await asyncio.to_thread(remove_files, blobs, doc.id)
    await bump_version(redis, collection)
    log.info("document.deleted", document_id=document_id, collection=collection)


def remove_files(blobs: BlobStore, document_id: str) -> None:
    """Delete a document's original and text; never raises: what the store refuses now
    is an orphan that `purge_orphans` removes later (no row points at it any more)."""
    try:
        blobs.delete_many([file_key(document_id), text_key(document_id)])
    except OSError as exc:
        log.warning("document.files_not_removed", document_id=document_id, error=repr(exc))


async def case_collection_owner(session: AsyncSession, case_id: str) -> str | None:
    record = await CaseCollectionRepository(session).get(case_id)
    return None if record is None else record.owner_id


async def claim_case(session: AsyncSession, case_id: str, owner_id: str) -> None:
    """Record `owner_id` as the owner of `case_<case_id>`; 404 when another user owns it."""
    record = await CaseCollectionRepository(session).claim(case_id, owner_id)
    if record.owner_id != owner_id:
        raise CaseNotFound()


async def drop_case(
    session: AsyncSession,
    case_id: str,
    owner_id: str,
    blobs: BlobStore,
    store: VectorStore,
    redis: Any,
    *,
    strict: bool,
) -> str | None:
    """Delete `case_<case_id>` with its documents and files (idempotent, owner-scoped).

    `strict` raises 404 when another user owns the case; otherwise that is a no-op.
    Returns the dropped collection's name, or None when nothing was dropped.
    """
    cases, docs_repo = CaseCollectionRepository(session), DocumentRepository(session)
    record = await cases.get(case_id)
    if record is not None and record.owner_id != owner_id:
        if strict:
            raise CaseNotFound()
        log.warning("case_collection.owner_mismatch", case_id=case_id)
        return None
    name = case_collection(case_id)
    await asyncio.to_thread(store.delete_collection, name)
    docs = await docs_repo.case_documents(case_id, owner_id)
    for doc in docs:
        await docs_repo.delete(doc)
        await asyncio.to_thread(remove_files, blobs, doc.id)
    await cases.drop(case_id)
    await bump_version(redis, name)
    log.info("case_collection.dropped", case_id=case_id, documents=len(docs))
    return name


def remove_evidence_chunks(store: VectorStore, case_id: str, file_id: str, owner_id: str) -> int:
    """Delete one evidence file's chunks from `case_<case_id>`; how many there were.

    Scoped by the chunks' own metadata (origin evidence, the owner), so a knowledge
    document of the same case or another user's chunk is never touched. Idempotent.
    """
    collection = case_collection(case_id)
    where = {"$and": [{"document_id": file_id}, {"origin": "evidence"}, {"owner_id": owner_id}]}
    found = store.count(collection, where)
    if found:
        store.delete_where(collection, where)
        log.info("evidence.unindexed", file_id=file_id, case_id=case_id, chunks=found)
    return found


# -- used by the worker's ingestion ---------------------------------------------------
async def load(session: AsyncSession, document_id: str) -> Document | None:
    return await DocumentRepository(session).get(document_id)


@dataclass
class Claim:
    """What an ingestion run may work on (ADR 0057).

    state: `claimed` (docs: its own document first, then others taken into the batch),
    `gone` (deleted), `done` (already processed or failed), `elsewhere` (another live
    run has it in its batch and settles its job).
    """

    state: Literal["claimed", "gone", "done", "elsewhere"]
    docs: list[Document] = field(default_factory=list)
    own: Document | None = None


async def claim_batch(
    session: AsyncSession,
    document_id: str,
    claimer: str,
    *,
    max_documents: int,
    max_bytes: int,
    stale_after: float,
    share: int = 1,
) -> Claim:
    """Claim the document, and up to `max_documents - 1` other waiting ones (newest
    first, within `max_bytes` in all), for one ingestion run; but no more than a
    `share`-th of what is waiting (in count and in bytes), so `share` parallel runs
    finish a burst together instead of one working through a full batch while the
    others idle. A claim older than `stale_after` seconds belongs to a run that is dead
    (it outlived the hard time limit) and may be taken over."""
    repo = DocumentRepository(session)
    now = utcnow()
    stale_before = now - timedelta(seconds=stale_after)
    own = await repo.get(document_id)
    if own is None:
        return Claim("gone")
    if own.status != "processing":
        return Claim("done", own=own)
    if not await repo.claim(own.id, claimer, now, stale_before):
        return Claim("elsewhere", own=own)
    docs, total = [own], own.size_bytes
    if max_documents > 1:
        newest = await repo.claim_candidates(
            own.id, claimer, stale_before, max_documents * share * 2
        )
        firsts = await repo.oldest_of_each_owner(
            own.id, claimer, stale_before, max_documents * share * 2
        )
        # Other users' oldest waiting documents join the pool (the newest alone may all be
        # one user's); the run's own user keeps the newest-first order.
        others = [d for d in firsts if d.owner_id != own.owner_id]
        candidates = fair_order(list({d.id: d for d in [*others, *newest]}.values()), own)
        share = max(1, share)
        # Its share of the waiting documents, by count and by size (bytes stand for work):
        # as many bytes as its share of documents would hold at their average size.
        waiting = len(candidates) + 1
        max_documents = min(max_documents, -(-waiting // share))
        waiting_bytes = own.size_bytes + sum(d.size_bytes for d in candidates)
        max_bytes = min(max_bytes, -(-waiting_bytes * max_documents // waiting))
        for doc in candidates:
            if len(docs) >= max_documents:
                break
            if total + doc.size_bytes > max_bytes:
                continue
            if await repo.claim(doc.id, claimer, now, stale_before):
                docs.append(doc)
                total += doc.size_bytes
    return Claim("claimed", docs=docs, own=own)


async def renew_claims(
    session: AsyncSession, document_ids: list[str], claimer: str, *, stale_after: float
) -> dict[str, str]:
    """A later slice of a batch (ADR 0160) renews its claims, so they do not look stale
    while its slices take turns with other work: per document `ours` (still waiting,
    claimed again now), `gone` (deleted) or `lost` (settled, or taken over by another
    run after the claim went stale)."""
    repo = DocumentRepository(session)
    now = utcnow()
    stale_before = now - timedelta(seconds=stale_after)
    states = {}
    for document_id in document_ids:
        if await repo.claim(document_id, claimer, now, stale_before):
            states[document_id] = "ours"
        elif await repo.get(document_id) is None:
            states[document_id] = "gone"
        else:
            states[document_id] = "lost"
    return states


def fair_order(candidates: list[Any], own: Any) -> list[Any]:
    """Round-robin over owners (issue 16 item 5: one user's 35 waiting documents held
    another user's behind them): each owner's first candidate, then each one's second...;
    the run's own document counts as its owner's first. Stable within an owner."""
    counts: dict[str, int] = {own.owner_id: 1}
    keyed = []
    for index, doc in enumerate(candidates):
        turn = counts.get(doc.owner_id, 0)
        counts[doc.owner_id] = turn + 1
        keyed.append((turn, index, doc))
    return [doc for _, _, doc in sorted(keyed, key=lambda k: (k[0], k[1]))]


async def held_claims(session: AsyncSession, claimer: str, keep_id: str) -> list[Document]:
    """The other documents `claimer` holds that still wait for ingestion."""
    return await DocumentRepository(session).held_claims(claimer, keep_id)


async def release_claims(session: AsyncSession, claimer: str, keep_id: str) -> list[Document]:
    """Give back the other documents a run had claimed (they need their own runs again)."""
    return await DocumentRepository(session).release_claims(claimer, keep_id)


async def mark_processed(
    session: AsyncSession, outcomes: list[tuple[str, int, str]], model: str
) -> set[str]:
    """Mark documents processed from (id, chunk count, preview); the ids still there
    (a document deleted meanwhile is not)."""
    kept = set()
    for document_id, chunk_count, preview in outcomes:
        doc = await DocumentRepository(session).get(document_id)
        if doc is None:
            continue
        doc.status, doc.error, doc.chunk_count = "processed", None, chunk_count
        doc.embedding_model, doc.preview, doc.updated_at = model, preview, utcnow()
        doc.claimed_by = doc.claimed_at = None
        kept.add(document_id)
    return kept


async def mark_failed(session: AsyncSession, document_id: str, reason: str) -> bool:
    doc = await DocumentRepository(session).get(document_id)
    if doc is None:
        return False
    doc.status, doc.error, doc.chunk_count, doc.updated_at = "failed", reason, 0, utcnow()
    doc.claimed_by = doc.claimed_at = None
    return True
