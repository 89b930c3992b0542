"""Ingestion, as the worker runs it: extract, chunk, embed in batches, upsert, mark.

Chunk ids are `<document_id>:<chunk_index>`, so a redo (a retry, or a task redelivered
after its worker died) overwrites the same vectors and never duplicates them; stale
chunks past the new count are deleted. Synchronous: it runs in the Celery worker.
Database steps go through `db`, which runs one async unit of work and commits.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from fm_common.blobs import BlobNotFound, BlobStore
from fm_common.limits import ParseLimitExceeded, run_bounded
from knowledge_service.config import Settings
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.ingest.chunking import Chunk, TokenBudget, chunk_units
from knowledge_service.domain.ingest.extract import (
    Extracted,
    ExtractionError,
    detect_kind,
    extract,
)
from knowledge_service.domain.vectors.embedder import Embedder
from knowledge_service.domain.vectors.store import ModelMismatch, VectorStore

log = structlog.get_logger("knowledge.ingest")
T = TypeVar("T")
Db = Callable[[Callable[[AsyncSession], Awaitable[T]]], T]
PREVIEW_CHARS = 500


@dataclass
class IngestDeps:
    settings: Settings
    # The originals and their extracted text (fm_common.blobs: the data dir or S3).
    blobs: BlobStore
    store: VectorStore
    embedder: Embedder
    db: Any  # Db: run an async unit of work with a session, committing it
    # A collection's content changed: bump its version (its BM25 index is rebuilt).
    changed: Callable[[str], None]
    # A document's job failed (job id, reason): recorded before the document is marked.
    job_failed: Callable[[str, str], None] | None = None


class PermanentIngestError(Exception):
    """Ingestion cannot succeed by retrying; recorded on the document."""


def chunk_metadata(doc: Any, chunk: Chunk, model: str, origin: str = "document") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "document_id": doc.id,
        "owner_id": doc.owner_id,
        "scope": doc.scope,
        "title": doc.title,
        "chunk_index": chunk.index,
        "source": doc.source_url or doc.filename,
        "document_type": doc.document_type,
        "tags_index": documents.tags_index(list(doc.tags or [])),
        "embedding_model": model,
        "origin": origin,
    }
    if chunk.context:
        meta["section"] = chunk.context[:500]
    if doc.category:
        meta["category"] = doc.category
    if doc.case_id:
        meta["case_id"] = doc.case_id
    for tag in doc.tags or []:
        meta[f"tag:{tag}"] = True
    return meta


def embed_and_upsert(
    deps: IngestDeps,
    collection: str,
    ids: list[str],
    texts: list[str],
    metas: list[dict[str, Any]],
    progress: Callable[[float], None] | None = None,
    *,
    start: int = 0,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Embed in batches from chunk `start` and upsert each group as soon as it is
    embedded; returns where it ended: `len(texts)`, or earlier when `stop()` said so
    after a group (a slice's time is up, ADR 0160). With `stop`, a group is one
    embedding batch, so a slice ends soon after its time; at least one group is done."""
    size = deps.settings.embed_batch_size
    group = size if stop is not None else size * 4
    for begin in range(start, len(texts), group):
        end = min(begin + group, len(texts))
        vectors = deps.embedder.encode(texts[begin:end], batch_size=size)
        deps.store.upsert(collection, ids[begin:end], vectors, texts[begin:end], metas[begin:end])
        if progress is not None:
            progress(end / len(texts))
        if stop is not None and end < len(texts) and stop():
            return end
    return len(texts)


@lru_cache(maxsize=4)
def token_budget(embedder: Embedder) -> TokenBudget | None:
    """The embedding model's input length and tokenizer, for chunking within it."""
    limit = embedder.max_seq_length
    if not limit:
        return None
    special = embedder.special_tokens

    @lru_cache(maxsize=8192)  # contexts and section names come back chunk after chunk
    def count(text: str) -> int:
        return embedder.count_tokens(text)

    return TokenBudget(count, int(limit) - special)


def chunks_for_file(
    path: Path,
    kind: str,
    settings: Settings,
    title: str | None,
    tokens: TokenBudget | None = None,
) -> tuple[list[Chunk], str]:
    chunks, extracted = extract_and_chunk(path, kind, settings, title, tokens)
    return chunks, extracted.text


def extract_and_chunk(
    path: Path,
    kind: str,
    settings: Settings,
    title: str | None,
    tokens: TokenBudget | None = None,
) -> tuple[list[Chunk], Extracted]:
    """Extract and chunk a file within the parse limits (memory and time included): in
    a child process, so any input a parser mishandles fails this document, with its
    reason, and never its worker. The chunks and the extraction (its text and, for an
    image, the OCR words with their boxes). Raises ExtractionError."""
    try:
        return run_bounded(
            _extract_and_chunk, path, kind, settings, title, tokens, limits=settings.parse_limits()
        )
    except ParseLimitExceeded as exc:
        raise ExtractionError(str(exc)) from None


def _extract_and_chunk(
    path: Path,
    kind: str,
    settings: Settings,
    title: str | None,
    tokens: TokenBudget | None = None,
) -> tuple[list[Chunk], Extracted]:
    limits = settings.parse_limits()
    extracted = extract(path, kind, limits, title)
    try:
        chunks = chunk_units(
            extracted.units,
            words=settings.chunk_words,
            overlap=settings.chunk_overlap_words,
            joiner=extracted.joiner,
            tokens=tokens,
            max_chunks=settings.max_chunks_per_document,
        )
    except ParseLimitExceeded as exc:
        raise ExtractionError(str(exc)) from None
    if not chunks:
        raise ExtractionError("No text could be extracted from the file.")
    if len(chunks) > settings.max_chunks_per_document:
        raise ExtractionError(
            f"The document makes {len(chunks)} chunks; the limit is "
            f"{settings.max_chunks_per_document}."
        )
    return chunks, extracted


@dataclass
class Outcome:
    """How one document of a batch ended: processed, failed (with the reason) or
    deleted (while it was being ingested)."""

    document_id: str
    status: str
    chunks: int = 0
    error: str | None = None

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"document_id": self.document_id, "status": self.status}
        if self.status == "processed":
            out["chunks"] = self.chunks
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class _Prepared:
    doc: Any
    chunks: list[Chunk]
    text: str


def _prepare(deps: IngestDeps, doc: Any, tokens: TokenBudget | None) -> _Prepared:
    kind = detect_kind(doc.filename, doc.content_type, doc.document_type)
    try:
        # The file itself on local storage; on S3 a temp copy streamed down (parsers
        # want a path), removed when done. A store that is down propagates (a retry).
        with deps.blobs.local_copy(documents.file_key(doc.id)) as path:
            chunks, text = chunks_for_file(path, kind, deps.settings, doc.title, tokens)
    except BlobNotFound:
        raise PermanentIngestError("The stored original of this document is missing.") from None
    except ExtractionError as exc:
        raise PermanentIngestError(str(exc)) from None
    return _Prepared(doc, chunks, text)


def _stale_tails(group: list[_Prepared]) -> dict[str, Any]:
    """Chunks past each document's new count (a redo with other settings leaves none)."""
    tails = [
        {"$and": [{"document_id": p.doc.id}, {"chunk_index": {"$gte": len(p.chunks)}}]}
        for p in group
    ]
    return tails[0] if len(tails) == 1 else {"$or": tails}


def ingest_batch(
    deps: IngestDeps, docs: list[Any], progress: Callable[[float], None] | None = None
) -> list[Outcome]:
    """Ingest claimed documents together; one Outcome per document, in order.

    Each document is extracted and chunked on its own (bad input fails that document
    alone, recorded on it); the chunks of all of them are embedded in one pass, upserted
    with one request per collection, and marked processed in one transaction: the
    per-document costs (store round trips, commits) are paid once per batch. Idempotent:
    chunk ids are deterministic. Transient errors (vector store, database or Redis down)
    propagate for a retry.
    """
    started = time.perf_counter()
    outcomes: dict[str, Outcome] = {}
    prepared: list[_Prepared] = []
    tokens = token_budget(deps.embedder)
    for doc in docs:
        try:
            prepared.append(_prepare(deps, doc, tokens))
        except PermanentIngestError as exc:
            outcomes[doc.id] = _fail(deps, doc, str(exc))
    extracted_at = time.perf_counter()
    model = deps.store.model_name
    groups: dict[str, list[_Prepared]] = {}
    for item in prepared:
        groups.setdefault(item.doc.collection, []).append(item)
    total = max(1, sum(len(p.chunks) for p in prepared))
    done = 0
    for collection, group in groups.items():
        ids = [f"{p.doc.id}:{c.index}" for p in group for c in p.chunks]
        texts = [c.text for p in group for c in p.chunks]
        metas = [chunk_metadata(p.doc, c, model) for p in group for c in p.chunks]
        base = done

        def report(fraction: float, base: int = base, size: int = len(ids)) -> None:
            if progress is not None:
                progress((base + fraction * size) / total)

        try:
            embed_and_upsert(deps, collection, ids, texts, metas, report)
        except ModelMismatch as exc:
            for item in group:
                outcomes[item.doc.id] = _fail(deps, item.doc, exc.detail)
            continue
        done += len(ids)
        deps.store.delete_where(collection, _stale_tails(group))
    embedded_at = time.perf_counter()
    finished = [p for p in prepared if p.doc.id not in outcomes]
    if finished:
        rows = []
        for item in finished:
            deps.blobs.put(documents.text_key(item.doc.id), item.text.encode("utf-8"))
            preview = " ".join(item.text.split())[:PREVIEW_CHARS]
            rows.append((item.doc.id, len(item.chunks), preview))
        kept = deps.db(lambda s: documents.mark_processed(s, rows, model))
        for item in finished:
            if item.doc.id in kept:
                outcomes[item.doc.id] = Outcome(item.doc.id, "processed", len(item.chunks))
            else:
                # Deleted while we worked: take our vectors back out.
                deps.store.delete_document(item.doc.collection, item.doc.id)
                documents.remove_files(deps.blobs, item.doc.id)
                outcomes[item.doc.id] = Outcome(item.doc.id, "deleted")
    for collection in groups:
        deps.changed(collection)
    log.info(
        "ingest.batch",
        documents=len(docs),
        processed=sum(o.status == "processed" for o in outcomes.values()),
        chunks=sum(o.chunks for o in outcomes.values()),
        collections=len(groups),
        seconds=round(time.perf_counter() - started, 3),
        extract_s=round(extracted_at - started, 3),
        embed_upsert_s=round(embedded_at - extracted_at, 3),
        finish_s=round(time.perf_counter() - embedded_at, 3),
    )
    return [outcomes[doc.id] for doc in docs]


def _fail(deps: IngestDeps, doc: Any, reason: str) -> Outcome:
    """A permanent failure of one document of a batch: recorded, partial vectors out."""
    deps.store.delete_document(doc.collection, doc.id)
    if deps.job_failed is not None and getattr(doc, "job_id", None):
        deps.job_failed(str(doc.job_id), reason)
    deps.db(lambda s: documents.mark_failed(s, doc.id, reason))
    deps.changed(doc.collection)
    log.warning("ingest.failed", document_id=doc.id, reason=reason)
    return Outcome(doc.id, "failed", error=reason)


def fail_document(deps: IngestDeps, document_id: str, reason: str) -> None:
    """Record a permanent failure and take out any vectors a partial run wrote."""
    doc = deps.db(lambda s: documents.load(s, document_id))
    if doc is not None:
        _fail(deps, doc, reason)
