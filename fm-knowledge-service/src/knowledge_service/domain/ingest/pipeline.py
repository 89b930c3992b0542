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
    """`embed_passages` over the chunks of one collection, from chunk `start`; returns
    where it ended, `progress` gets the fraction done. A collection that holds another
    model's vectors raises ModelMismatch."""
    passages = [(collection, *chunk) for chunk in zip(ids, texts, metas, strict=True)]

    def report(at: int) -> None:
        if progress is not None:
            progress(at / len(texts))

    done, refused = embed_passages(deps, passages, start=start, stop=stop, progress=report)
    if refused:
        raise ModelMismatch(refused[collection])
    return done


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


# One chunk of a batch's work list: its collection, id, text and metadata (what the
# collection holds). A batch's passages are its documents' chunks, document after
# document in the batch's work order.
Passage = tuple[str, str, str, dict[str, Any]]


@dataclass
class Member:
    """A document of a batch, in the work order: where its passages are, and what
    marking it processed needs (kept in the kwargs of the batch's later slices)."""

    id: str
    collection: str
    chunks: int
    preview: str
    job_id: str | None = None

    def dump(self) -> list[Any]:
        return [self.id, self.collection, self.chunks, self.preview, self.job_id]

    @classmethod
    def load(cls, raw: list[Any]) -> Member:
        return cls(str(raw[0]), str(raw[1]), int(raw[2]), str(raw[3]), raw[4])


def spans(members: list[Member]) -> list[tuple[Member, int, int]]:
    """Each member with where its passages start and end in the batch's work list."""
    out, at = [], 0
    for member in members:
        out.append((member, at, at + member.chunks))
        at += member.chunks
    return out


def _passages(item: _Prepared, model: str) -> list[Passage]:
    doc = item.doc
    return [
        (doc.collection, f"{doc.id}:{c.index}", c.text, chunk_metadata(doc, c, model))
        for c in item.chunks
    ]


def embed_passages(
    deps: IngestDeps,
    passages: list[Passage],
    *,
    start: int = 0,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[int], None] | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
) -> tuple[int, dict[str, str]]:
    """Embed `passages` from `start` in groups and upsert each group (one request per
    collection in it) as soon as it is embedded. Returns where it ended (the end, or
    earlier when `stop()` said so after a group: a slice's time is up, ADR 0160; at
    least one group is done) and the collections that refused the model, with the
    reason (their passages are skipped from then on). Passages of documents in `skip`
    are left out; `progress` gets the position reached."""
    size = deps.settings.embed_batch_size
    group = size if stop is not None else size * 4
    refused: dict[str, str] = {}
    for begin in range(start, len(passages), group):
        end = min(begin + group, len(passages))
        part = [
            p
            for p in passages[begin:end]
            if p[0] not in refused and p[3]["document_id"] not in skip
        ]
        if part:
            vectors = deps.embedder.encode([p[2] for p in part], batch_size=size)
            for collection in dict.fromkeys(p[0] for p in part):
                at = [i for i, p in enumerate(part) if p[0] == collection]
                try:
                    deps.store.upsert(
                        collection,
                        [part[i][1] for i in at],
                        [vectors[i] for i in at],
                        [part[i][2] for i in at],
                        [part[i][3] for i in at],
                    )
                except ModelMismatch as exc:
                    refused[collection] = exc.detail
        if progress is not None:
            progress(end)
        if stop is not None and end < len(passages) and stop():
            return end, refused
    return len(passages), refused


def preview_of(text: str) -> str:
    return " ".join(text.split())[:PREVIEW_CHARS]


@dataclass
class BatchRun:
    """Where a batch's run left it: the outcomes of the documents settled so far (in
    this run), its members in the work order, their passages, and how far it got."""

    outcomes: dict[str, Outcome]
    members: list[Member]
    passages: list[Passage]
    done: int

    @property
    def total(self) -> int:
        return len(self.passages)


def ingest_batch(
    deps: IngestDeps,
    docs: list[Any],
    progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> BatchRun:
    """Ingest claimed documents together (ADR 0057), or begin to (ADR 0160).

    Each document is extracted and chunked on its own (bad input fails that document
    alone, recorded on it); the chunks of all of them are embedded in one pass, smallest
    document first, upserted per collection, and the documents whose chunks are all in
    are marked processed in one transaction: the per-document costs (store round trips,
    commits) are paid once per batch. With `stop` (a slice's time), the run may end
    before the last chunk: the documents done are marked, the others' extracted text
    is stored, and `continue_batch` does the rest from `BatchRun.done`. Idempotent:
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
    # Smallest first: in a batch cut into slices, the small documents are done (and
    # marked) in the first one instead of waiting for a large one's last.
    prepared.sort(key=lambda p: len(p.chunks))
    model = deps.store.model_name
    members = [
        Member(
            p.doc.id,
            p.doc.collection,
            len(p.chunks),
            preview_of(p.text),
            str(p.doc.job_id) if getattr(p.doc, "job_id", None) else None,
        )
        for p in prepared
    ]
    passages = [row for item in prepared for row in _passages(item, model)]
    total = max(1, len(passages))

    def report(at: int) -> None:
        if progress is not None:
            progress(at / total)

    done, refused = embed_passages(deps, passages, stop=stop, progress=report)
    embedded_at = time.perf_counter()
    for item in prepared:
        if item.doc.collection in refused:
            outcomes[item.doc.id] = _fail(deps, item.doc, refused[item.doc.collection])
    # Every member's text is stored now: the document shows it once processed, and a
    # later slice may need to prepare a member's passages again from it.
    for item in prepared:
        if item.doc.id not in outcomes:
            deps.blobs.put(documents.text_key(item.doc.id), item.text.encode("utf-8"))
    finished = [m for m, _, end in spans(members) if end <= done and m.id not in outcomes]
    outcomes.update(finish_members(deps, finished))
    log.info(
        "ingest.batch",
        documents=len(docs),
        processed=sum(o.status == "processed" for o in outcomes.values()),
        chunks=sum(o.chunks for o in outcomes.values()),
        embedded=done,
        of=len(passages),
        seconds=round(time.perf_counter() - started, 3),
        extract_s=round(extracted_at - started, 3),
        embed_upsert_s=round(embedded_at - extracted_at, 3),
        finish_s=round(time.perf_counter() - embedded_at, 3),
    )
    return BatchRun(outcomes, members, passages, done)


def finish_members(deps: IngestDeps, finished: list[Member]) -> dict[str, Outcome]:
    """Members whose chunks are all in (and whose text is stored): stale chunks past each
    one's count removed, all marked processed in one transaction (a document deleted
    meanwhile has its vectors and files taken back out), and each collection's version
    bumped once."""
    if not finished:
        return {}
    by_collection: dict[str, list[Member]] = {}
    for member in finished:
        by_collection.setdefault(member.collection, []).append(member)
    for collection, group in by_collection.items():
        tails = [
            {"$and": [{"document_id": m.id}, {"chunk_index": {"$gte": m.chunks}}]} for m in group
        ]
        deps.store.delete_where(collection, tails[0] if len(tails) == 1 else {"$or": tails})
    rows = [(m.id, m.chunks, m.preview) for m in finished]
    model = deps.store.model_name
    kept = deps.db(lambda s: documents.mark_processed(s, rows, model))
    outcomes = {}
    for member in finished:
        if member.id in kept:
            outcomes[member.id] = Outcome(member.id, "processed", member.chunks)
        else:
            outcomes[member.id] = take_back_member(deps, member)
    for collection in by_collection:
        deps.changed(collection)
    return outcomes


def take_back_member(deps: IngestDeps, member: Member) -> Outcome:
    """A member deleted while it was being ingested: our vectors and its files out (the
    caller bumps its collection's version)."""
    deps.store.delete_document(member.collection, member.id)
    documents.remove_files(deps.blobs, member.id)
    return Outcome(member.id, "deleted")


def prepare_again(deps: IngestDeps, member: Member) -> list[Passage]:
    """A member's passages prepared again from its stored original (chunking is
    deterministic: the same ids, texts and metadata), for a later slice whose kept
    passages are gone or were never kept. Raises PermanentIngestError."""
    doc = deps.db(lambda s: documents.load(s, member.id))
    if doc is None:
        raise PermanentIngestError("The document was deleted.")
    item = _prepare(deps, doc, token_budget(deps.embedder))
    if len(item.chunks) != member.chunks:
        raise PermanentIngestError(
            f"The document made {len(item.chunks)} chunks again, not {member.chunks}."
        )
    return _passages(item, deps.store.model_name)


def _fail(deps: IngestDeps, doc: Any, reason: str) -> Outcome:
    """A permanent failure of one document of a batch: recorded, partial vectors out."""
    deps.store.delete_document(doc.collection, doc.id)
    if deps.job_failed is not None and getattr(doc, "job_id", None):
        deps.job_failed(str(doc.job_id), reason)
    deps.db(lambda s: documents.mark_failed(s, doc.id, reason))
    deps.changed(doc.collection)
    log.warning("ingest.failed", document_id=doc.id, reason=reason)
    return Outcome(doc.id, "failed", error=reason)


def fail_member(deps: IngestDeps, member: Member, reason: str) -> Outcome:
    """A permanent failure of a batch member in a later slice (as `_fail`)."""
    doc = deps.db(lambda s: documents.load(s, member.id))
    if doc is None:
        return take_back_member(deps, member)
    return _fail(deps, doc, reason)


def fail_document(deps: IngestDeps, document_id: str, reason: str) -> None:
    """Record a permanent failure and take out any vectors a partial run wrote."""
    doc = deps.db(lambda s: documents.load(s, document_id))
    if doc is not None:
        _fail(deps, doc, reason)
