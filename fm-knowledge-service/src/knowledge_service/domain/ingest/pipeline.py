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
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from knowledge_service.config import Settings
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.ingest.chunking import Chunk, chunk_units
from knowledge_service.domain.ingest.extract import (
    ExtractionError,
    Limits,
    decode_text,
    detect_kind,
    extract,
    extract_text,
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
    store: VectorStore
    embedder: Embedder
    db: Any  # Db: run an async unit of work with a session, committing it
    # A collection's content changed: bump its version (its BM25 index is rebuilt).
    changed: Callable[[str], None]


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
) -> None:
    """Embed in batches and upsert each group as soon as it is embedded."""
    group = deps.settings.embed_batch_size * 4
    for start in range(0, len(texts), group):
        end = start + group
        vectors = deps.embedder.encode(texts[start:end], batch_size=deps.settings.embed_batch_size)
        deps.store.upsert(collection, ids[start:end], vectors, texts[start:end], metas[start:end])
        if progress is not None:
            progress(min(1.0, end / len(texts)))


def chunks_for_file(
    path: Path, kind: str, settings: Settings, title: str | None
) -> tuple[list[Chunk], str]:
    limits = Limits(max_chars=settings.max_extracted_chars, max_pdf_pages=settings.max_pdf_pages)
    extracted = extract(path, kind, limits, title)
    chunks = chunk_units(
        extracted.units,
        words=settings.chunk_words,
        overlap=settings.chunk_overlap_words,
        joiner=extracted.joiner,
    )
    if not chunks:
        raise ExtractionError("No text could be extracted from the file.")
    if len(chunks) > settings.max_chunks_per_document:
        raise ExtractionError(
            f"The document makes {len(chunks)} chunks; the limit is "
            f"{settings.max_chunks_per_document}."
        )
    return chunks, extracted.text


def ingest_document(
    deps: IngestDeps, document_id: str, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Ingest one stored document. Idempotent; raises PermanentIngestError for bad input.

    Transient errors (vector store, database or Redis down) propagate for a retry.
    """
    started = time.perf_counter()
    doc = deps.db(lambda s: documents.load(s, document_id))
    if doc is None:
        log.info("ingest.document_gone", document_id=document_id)
        return {"document_id": document_id, "status": "deleted"}
    if doc.status == "processed":
        return {"document_id": document_id, "status": "processed", "chunks": doc.chunk_count}
    settings = deps.settings
    path = documents.file_path(settings, doc.id)
    if not path.exists():
        raise PermanentIngestError("The stored original of this document is missing.")
    kind = detect_kind(doc.filename, doc.content_type, doc.document_type)
    try:
        chunks, text = chunks_for_file(path, kind, settings, doc.title)
    except ExtractionError as exc:
        raise PermanentIngestError(str(exc)) from None
    extracted_at = time.perf_counter()
    model = deps.store.model_name
    ids = [f"{doc.id}:{c.index}" for c in chunks]
    texts = [c.text for c in chunks]
    metas = [chunk_metadata(doc, c, model) for c in chunks]
    try:
        embed_and_upsert(deps, doc.collection, ids, texts, metas, progress)
    except ModelMismatch as exc:
        raise PermanentIngestError(exc.detail) from None
    embedded_at = time.perf_counter()
    # A redo with fewer chunks (other settings) leaves no stale tail behind.
    deps.store.delete_where(
        doc.collection,
        {"$and": [{"document_id": doc.id}, {"chunk_index": {"$gte": len(chunks)}}]},
    )
    settings.text_dir.mkdir(parents=True, exist_ok=True)
    documents.text_path(settings, doc.id).write_text(text, encoding="utf-8")
    preview = " ".join(text.split())[:PREVIEW_CHARS]
    still_there = deps.db(
        lambda s: documents.mark_processed(s, doc.id, len(chunks), model, preview)
    )
    if not still_there:
        # Deleted while we worked: take our vectors back out.
        deps.store.delete_document(doc.collection, doc.id)
        documents.remove_files(settings, doc.id)
    deps.changed(doc.collection)
    took = time.perf_counter() - started
    log.info(
        "ingest.processed",
        document_id=doc.id,
        chunks=len(chunks),
        kind=kind,
        collection=doc.collection,
        seconds=round(took, 3),
        extract_s=round(extracted_at - started, 3),
        embed_upsert_s=round(embedded_at - extracted_at, 3),
        finish_s=round(time.perf_counter() - embedded_at, 3),
    )
    return {"document_id": doc.id, "status": "processed", "chunks": len(chunks)}


def fail_document(deps: IngestDeps, document_id: str, reason: str) -> None:
    """Record a permanent failure and take out any vectors a partial run wrote."""
    doc = deps.db(lambda s: documents.load(s, document_id))
    if doc is None:
        return
    deps.store.delete_document(doc.collection, doc.id)
    deps.db(lambda s: documents.mark_failed(s, document_id, reason))
    deps.changed(doc.collection)
    log.warning("ingest.failed", document_id=document_id, reason=reason)


def text_chunks(data: bytes, kind: str, settings: Settings, title: str) -> list[Chunk]:
    """Chunks of raw bytes (evidence): decoded as text, chunked like a document."""
    limits = Limits(max_chars=settings.max_extracted_chars, max_pdf_pages=settings.max_pdf_pages)
    extracted = extract_text(kind, decode_text(data, limits), limits, title)
    return chunk_units(
        extracted.units,
        words=settings.chunk_words,
        overlap=settings.chunk_overlap_words,
        joiner=extracted.joiner,
    )
