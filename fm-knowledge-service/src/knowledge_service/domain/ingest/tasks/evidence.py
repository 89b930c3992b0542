"""Indexing of a case's evidence files (queue `ingest`): `knowledge.index_evidence`, and
`knowledge.unindex_evidence` (queue `maintenance`) once a file is deleted.

Like the document ingestion (`tasks.documents`), they run the knowledge domain code in the worker
(ADR 0055); only the evidence bytes come over HTTP (the evidence service owns them), with
a service token acting for the evidence's owner. A large file is indexed in slices (ADR
0160), its prepared passages kept in Redis between them (`kept`, ADR 0166).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from fm_common.clients.evidence import EvidenceClient
from fm_common.contracts.evidence import (
    MAX_EXTRACTED_TEXT_CHARS,
    LayoutWord,
    TextLayout,
    text_is_extracted,
)
from fm_common.errors import FMError, NotFound
from fm_common.limits import ParseLimitExceeded, run_bounded
from fm_common.tasks import Host, Kwargs, PermanentError, TaskContext, record_job_failure, task
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.documents.service import remove_evidence_chunks
from knowledge_service.domain.ingest import kept as keeper
from knowledge_service.domain.ingest.extract import (
    Extracted,
    ExtractionError,
    detect_kind,
    extract,
)
from knowledge_service.domain.ingest.pipeline import (
    embed_and_upsert,
    extract_and_chunk,
    token_budget,
)
from knowledge_service.domain.vectors.store import case_collection
from knowledge_service.worker import knowledge

log = structlog.get_logger("worker.knowledge")

BINARY_KINDS = frozenset({"pdf", "image", "docx", "pptx", "xlsx", "odt", "ods"})


def _report_evidence(host: Host, kwargs: Kwargs, status: str, summary: str) -> None:
    """Tell the evidence service how indexing went (its uploaded-files list shows it)."""
    client = EvidenceClient(host.settings.evidence_url, host.http)
    token = host.service_token(kwargs["owner_id"])
    try:
        host.run(client.set_analysis(kwargs["file_id"], status, summary=summary, token=token))
    except NotFound:
        log.info("evidence.gone", file_id=kwargs["file_id"])


# The prepared chunks of an evidence file indexed in slices (ADR 0160), read by its
# later slices: a Redis list of [id, redacted text, metadata] (as the collection holds
# them), read a window at a time, so a slice's cost does not grow with the file; within
# the kept-passages budget (`kept`, ADR 0166).
EVIDENCE_SLICES_KEY = "fm:knowledge:evidence-slices:{}"


@dataclass
class _Passages:
    """Chunks of an evidence file ready to embed: ids, redacted texts, metadata."""

    ids: list[str]
    texts: list[str]
    metas: list[dict[str, Any]]


def _save_passages(host: Host, file_id: str, passages: _Passages) -> bool:
    rows = list(zip(passages.ids, passages.texts, passages.metas, strict=True))
    budget = knowledge(host).settings.slice_passages_mb * 1024 * 1024
    return keeper.keep(host.redis, EVIDENCE_SLICES_KEY.format(file_id), rows, budget)


def _load_passages(host: Host, file_id: str, start: int) -> tuple[int, _Passages] | None:
    """How many passages the file has, and a window of them from `start`; None when they
    are not kept (over the budget, expired, Redis restarted)."""
    key = EVIDENCE_SLICES_KEY.format(file_id)
    found = keeper.window(host.redis, key, start, keeper.SLICE_WINDOW)
    if found is None:
        return None
    total, rows = found
    try:
        window = _Passages([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    except (IndexError, TypeError):
        return None
    return total, window


def _drop_passages(host: Host, file_id: str) -> None:
    keeper.drop(host.redis, EVIDENCE_SLICES_KEY.format(file_id))


def _fail_evidence(host: Host, kwargs: Kwargs, message: str, code: str) -> None:
    record_job_failure(host, kwargs, message, code)
    try:
        _report_evidence(host, kwargs, "failed", message)
    except FMError as exc:  # the failure is recorded in the job store and the log anyway
        log.warning("evidence.report_failed", error=exc.detail)
    _drop_passages(host, kwargs["file_id"])
    # A failed file is not searchable in part: the chunks its earlier slices (or a run
    # that died) upserted go (owner-scoped; the store may be what is down).
    try:
        take_back(host, kwargs["case_id"], kwargs["file_id"], kwargs["owner_id"])
    except Exception as exc:
        log.warning("evidence.take_back_failed", file_id=kwargs["file_id"], error=repr(exc))


@task("knowledge.index_evidence", queue="ingest", give_up=_fail_evidence)
def index_evidence(
    ctx: TaskContext, file_id: str, case_id: str, owner_id: str, start: int = 0
) -> dict[str, Any]:
    """Index a case's text evidence into `case_<case_id>` (as its owner), in slices.

    The first slice reads, redacts and chunks the file; every slice embeds and upserts
    chunks from `start` until its time is up (FM_WORKER_SLICE_SECONDS) and hands the
    rest over (`ctx.resume_later`), so one user's large file does not hold a worker
    child while another user's file waits (ADR 0160). Later slices read a window of the
    chunks the first one kept in Redis (or prepare them again: chunking is
    deterministic); chunk ids are too, so a redone slice overwrites its vectors. The
    last slice removes stale chunks and reports the file `completed`.
    """
    host = ctx.host
    k = knowledge(host)
    token = host.service_token(owner_id)
    client = EvidenceClient(host.settings.evidence_url, host.http)
    kept = _load_passages(host, file_id, start) if start else None
    if kept is not None:
        # A later slice: the file may have been deleted since the first.
        try:
            host.run(client.get(file_id, token=token))
        except NotFound:
            return _gone(host, case_id, file_id, owner_id)
        (total, passages), offset = kept, start
    else:
        prepared = _prepare_evidence(host, file_id, case_id, owner_id, token, client)
        if prepared is None:
            return _gone(host, case_id, file_id, owner_id)
        passages, offset, total = prepared, 0, len(prepared.ids)
    deps = k.ingest_deps()
    collection = case_collection(case_id)
    size = len(passages.ids)
    done = offset + embed_and_upsert(
        deps,
        collection,
        passages.ids,
        passages.texts,
        passages.metas,
        lambda fraction: ctx.progress((offset + fraction * size) / max(1, total)),
        start=start - offset,
        stop=ctx.slice_over,
    )
    if done < total:
        if kept is None:  # prepared here: kept for the later slices
            _save_passages(host, file_id, passages)
        ctx.resume_later(start=done)
        return {"file_id": file_id, "case_id": case_id, "indexed": done, "chunks": total}
    deps.store.delete_where(
        collection, {"$and": [{"document_id": file_id}, {"chunk_index": {"$gte": total}}]}
    )
    k.collection_changed(collection)
    _drop_passages(host, file_id)
    summary = f"Indexed as {total} passages of the case's knowledge."
    # The report doubles as the re-check after the upsert: a file deleted after its bytes
    # were fetched answers 404 here, and its chunks are taken back out. A delete that
    # commits after this answer queues knowledge.unindex_evidence, which runs after the
    # upsert: either way the deleted file's text does not stay searchable.
    try:
        host.run(client.set_analysis(file_id, "completed", summary=summary, token=token))
    except NotFound:
        log.info("evidence.deleted_while_indexing", file_id=file_id)
        take_back(host, case_id, file_id, owner_id)
        return {"file_id": file_id, "status": "gone"}
    return {"file_id": file_id, "case_id": case_id, "chunks": total}


def _gone(host: Host, case_id: str, file_id: str, owner_id: str) -> dict[str, Any]:
    log.info("evidence.gone", file_id=file_id)
    # An earlier attempt (or slice) may have upserted after the unindex ran: take that
    # back too.
    _drop_passages(host, file_id)
    take_back(host, case_id, file_id, owner_id)
    return {"file_id": file_id, "status": "gone"}


def _prepare_evidence(
    host: Host, file_id: str, case_id: str, owner_id: str, token: str, client: EvidenceClient
) -> _Passages | None:
    """Fetch, redact and chunk an evidence file (storing what was read from an image or
    office document with it); None when the file is gone."""
    k = knowledge(host)
    try:
        k.db(lambda s: documents.claim_case(s, case_id, owner_id))
    except documents.CaseNotFound:
        raise PermanentError("The case belongs to another user.", "CASE_NOT_FOUND") from None
    limit = k.settings.max_upload_bytes
    try:
        host.run(client.set_analysis(file_id, "processing", token=token))
        meta = host.run(client.get(file_id, token=token))
        data = host.run(client.read_content(file_id, max_bytes=limit + 1, token=token))
    except NotFound:
        return None
    if meta.case_id != case_id:
        raise PermanentError("The evidence file is not part of this case.", "CASE_MISMATCH")
    if len(data) > limit:
        raise PermanentError("The evidence file is over the indexing limit.", "TOO_LARGE")
    kind = detect_kind(meta.filename, meta.content_type, None)
    # Text is redacted with the case's placeholders before it is cut into chunks, so a
    # secret a chunk boundary would split (a private key's header and body) is seen
    # whole; the case's collection never holds it, and passages come back consistent.
    # Binary formats (PDF, office documents, images read by OCR) are redacted chunk by
    # chunk after extraction; the text the worker stores with the file for the agent is
    # the original (like the file), redacted by the agent before any provider call.
    whole = kind not in BINARY_KINDS and b"\x00" not in data[:65536]
    if whole:
        text = data.decode("utf-8", errors="replace")
        data = host.peers.redact(case_id, [text], chunks=False)[0].encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evidence"
        path.write_bytes(data)
        try:
            chunks, extracted = extract_and_chunk(
                path, kind, k.settings, meta.filename, token_budget(k.embedder)
            )
        except ExtractionError as exc:
            raise PermanentError(str(exc), "NOT_INDEXABLE") from None
    if text_is_extracted(meta.source_type, meta.content_type):
        # What was read (OCR, an office document's text) is stored with the file before
        # the embedding: a turn waiting for it (the agent) need not wait for the index.
        try:
            _store_text(host, client, file_id, extracted, token)
        except NotFound:
            return None
    model = k.store.model_name
    ids = [f"evidence:{file_id}:{c.index}" for c in chunks]
    texts = [c.text for c in chunks]
    if not whole:  # a binary format (PDF, ...): its extracted chunks, each on its own
        texts = host.peers.redact(case_id, texts, chunks=True)
    metas = [
        {
            "document_id": file_id,
            "owner_id": owner_id,
            "scope": "case",
            "title": meta.filename,
            "chunk_index": c.index,
            "source": meta.filename,
            "document_type": "evidence",
            "case_id": case_id,
            "tags_index": ",",
            "embedding_model": model,
            "origin": "evidence",
            **({"section": c.context[:500]} if c.context else {}),
        }
        for c in chunks
    ]
    return _Passages(ids, texts, metas)


def read_pending_text(host: Host, file_id: str, owner_id: str) -> str:
    """Read an image or office document now, in this task, and store its text with the
    file, when its indexing task has not yet: a queued turn run by this worker must not
    wait for a task that needs the worker slot the turn holds. The index task still
    indexes it later (storing the same text again). The text's status afterwards."""
    token = host.service_token(owner_id)
    client = EvidenceClient(host.settings.evidence_url, host.http)
    found = host.run(client.read_text(file_id, token=token))
    if found.status != "pending":
        return str(found.status)
    k = knowledge(host).settings
    meta = host.run(client.get(file_id, token=token))
    data = host.run(client.read_content(file_id, max_bytes=k.max_upload_bytes + 1, token=token))
    if len(data) > k.max_upload_bytes:
        return "pending"  # the index task records the failure
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evidence"
        path.write_bytes(data)
        kind = detect_kind(meta.filename, meta.content_type, None)
        limits = k.parse_limits()
        try:
            # Bounded like every extraction (fm_common.limits): a child process.
            extracted = run_bounded(extract, path, kind, limits, meta.filename, limits=limits)
        except ParseLimitExceeded as exc:
            log.info("evidence.read_failed", file_id=file_id, reason=str(exc))
            return "pending"
        except ExtractionError as exc:
            log.info("evidence.read_failed", file_id=file_id, reason=str(exc))
            return "pending"  # the index task records the failure with its reason
    _store_text(host, client, file_id, extracted, token)
    return "ready"


def _store_text(
    host: Host, client: EvidenceClient, file_id: str, extracted: Extracted, token: str
) -> None:
    """Give the evidence service the text read from a file, with the words' boxes for an
    image (what a pixel redaction needs)."""
    text = extracted.text[:MAX_EXTRACTED_TEXT_CHARS]
    layout = None
    if extracted.ocr is not None:
        words = [
            LayoutWord(
                text=w.text[:500],
                left=max(0, w.left),
                top=max(0, w.top),
                width=w.width,
                height=w.height,
                start=w.start,
                end=w.end,
            )
            for w in extracted.ocr.words
            if w.end <= len(text)
        ][:50_000]
        layout = TextLayout(width=extracted.ocr.width, height=extracted.ocr.height, words=words)
    host.run(client.set_text(file_id, text, layout=layout, token=token))
    log.info("evidence.text_stored", file_id=file_id, chars=len(text), kind=extracted.kind)


def take_back(host: Host, case_id: str, file_id: str, owner_id: str) -> int:
    """Remove an evidence file's chunks from its case's collection; how many there were."""
    k = knowledge(host)
    removed = int(remove_evidence_chunks(k.store, case_id, file_id, owner_id))
    if removed:
        k.collection_changed(case_collection(case_id))
    return removed


@task("knowledge.unindex_evidence", queue="maintenance")
def unindex_evidence(ctx: TaskContext, file_id: str, case_id: str, owner_id: str) -> dict[str, Any]:
    """Take a deleted evidence file's chunks out of `case_<case_id>` (owner-scoped,
    idempotent); the BM25 index follows through the collection's version."""
    host = ctx.host
    owner = knowledge(host).db(lambda s: documents.case_collection_owner(s, case_id))
    if owner is not None and owner != owner_id:
        log.warning("evidence.unindex_owner_mismatch", case_id=case_id, file_id=file_id)
        return {"file_id": file_id, "removed": 0}
    return {"file_id": file_id, "removed": take_back(host, case_id, file_id, owner_id)}
