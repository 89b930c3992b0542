"""Ingestion tasks (queue `ingest`): uploaded documents, and a case's evidence files.

They run the knowledge domain code in the worker (ADR 0055): the knowledge database,
the embedder and the Chroma server directly; only the evidence bytes come over HTTP (the
evidence service owns them), with a service token acting for the evidence's owner.
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
    IngestDeps,
    Member,
    Outcome,
    Passage,
    PermanentIngestError,
    embed_and_upsert,
    embed_passages,
    extract_and_chunk,
    fail_document,
    fail_member,
    finish_members,
    ingest_batch,
    prepare_again,
    spans,
    take_back_member,
    token_budget,
)
from knowledge_service.domain.vectors.store import case_collection
from knowledge_service.worker import knowledge

log = structlog.get_logger("worker.knowledge")

INGEST_DOCUMENT = "knowledge.ingest_document"
BINARY_KINDS = frozenset({"pdf", "image", "docx", "pptx", "xlsx", "odt", "ods"})


def _fail_ingest(host: Host, kwargs: Kwargs, message: str, code: str) -> None:
    claimer = kwargs.get("claimer") or kwargs.get("job_id")
    if kwargs.get("claimer") and not _waiting(host, kwargs["document_id"]):
        # A later slice of a batch whose own document was settled by an earlier slice:
        # that stays as it is; the members still waiting go back to their own runs.
        keeper.drop(host.redis, INGEST_SLICES_KEY.format(claimer))
        _release_batch(host, claimer, kwargs["document_id"])
        return
    # The job first: whoever sees the document failed finds the job failed too.
    record_job_failure(host, kwargs, message, code)
    fail_document(knowledge(host).ingest_deps(), kwargs["document_id"], message)
    # The others of its batch are not at fault: they go back to their own runs.
    if claimer:
        keeper.drop(host.redis, INGEST_SLICES_KEY.format(claimer))
        _release_batch(host, claimer, kwargs["document_id"])


def _waiting(host: Host, document_id: str) -> bool:
    doc = knowledge(host).db(lambda s: documents.load(s, document_id))
    return doc is not None and doc.status == "processing"


def _release_batch(host: Host, claimer: str, keep_id: str) -> int:
    """Unclaim the other documents `claimer` took into its batch and send each its own
    ingestion again (their first runs ended, leaving them to the batch).

    Each is recorded in flight before it is unclaimed, so a send that never happens
    (the broker down right then) is re-sent by jobs.reap_stale: no document is left
    waiting with neither a claim nor a task.
    """
    k = knowledge(host)
    held = k.db(lambda s: documents.held_claims(s, claimer, keep_id))
    expected = set()
    for doc in held:
        if doc.job_id:
            kwargs = {"document_id": doc.id, "job_id": doc.job_id}
            host.expect(str(doc.job_id), INGEST_DOCUMENT, "ingest", kwargs)
            expected.add(doc.id)
    released = k.db(lambda s: documents.release_claims(s, claimer, keep_id))
    for doc in released:
        if doc.id in expected:
            host.resend(str(doc.job_id))
    if released:
        log.warning("ingest.batch_released", claimer=claimer, documents=len(released))
    return len(released)


@task(INGEST_DOCUMENT, queue="ingest", give_up=_fail_ingest)
def ingest_document(
    ctx: TaskContext,
    document_id: str,
    claimer: str | None = None,
    batch: list[list[Any]] | None = None,
    start: int = 0,
) -> dict[str, Any]:
    """Extract, chunk, embed and upsert an uploaded document, with other waiting ones,
    in slices.

    The run claims its document and, on a first attempt, up to
    FM_KNOWLEDGE_INGEST_BATCH_DOCUMENTS other waiting documents, ingests them together
    and settles every one's job. A document already in another live run's batch is left
    to it. A redo (retry or redelivery) works alone and gives the rest of its old batch
    back, so a file that kills its worker cannot take others down with it (ADR 0057).

    When its time is up (FM_WORKER_SLICE_SECONDS) the run ends as a slice (ADR 0160,
    0166): the documents done so far are marked processed, and the next slice gets the
    batch (`claimer`: the claims' holder; `batch`: its members in the work order) and
    the position reached (`start`), and reads its window of passages from Redis.
    """
    if claimer is not None and batch is not None:
        return _continue_batch(ctx, document_id, claimer, [Member.load(m) for m in batch], start)
    host = ctx.host
    k = knowledge(host)
    claimer = ctx.track_id
    first = ctx.attempts == 1
    if not first:
        _release_batch(host, claimer, document_id)
    claim = k.db(
        lambda s: documents.claim_batch(
            s,
            document_id,
            claimer,
            max_documents=k.settings.ingest_batch_documents if first else 1,
            max_bytes=k.settings.ingest_batch_bytes,
            stale_after=_stale_after(host),
            share=host.settings.concurrency,
        )
    )
    if claim.state == "gone":
        log.info("ingest.document_gone", document_id=document_id)
        return {"document_id": document_id, "status": "deleted"}
    if claim.state == "done":
        own = claim.own
        assert own is not None
        if own.status == "failed":
            # Whoever failed it (a batch, an earlier attempt, reap_stale) took its vectors
            # out; failing it again would only churn the collection. Its job says failed.
            if ctx.job_id:
                error = {"message": own.error, "code": "INGEST_FAILED"}
                host.jobs.update(ctx.job_id, status="failed", error=error)
            ctx.leave_job()
            return {"document_id": document_id, "status": "failed", "error": own.error}
        return {"document_id": document_id, "status": own.status, "chunks": own.chunk_count}
    if claim.state == "elsewhere":
        assert claim.own is not None
        ctx.leave_job()
        return {"document_id": document_id, "status": "batched", "by": claim.own.claimed_by}
    others = [d for d in claim.docs[1:] if d.job_id]
    for doc in others:
        host.jobs.update(str(doc.job_id), status="running")
    run = ingest_batch(k.ingest_deps(), claim.docs, progress=ctx.progress, stop=ctx.slice_over)
    sliced = run.done < run.total
    if sliced:
        rows = [list(p) for p in run.passages]
        budget = k.settings.slice_passages_mb * 1024 * 1024
        keeper.keep(host.redis, INGEST_SLICES_KEY.format(claimer), rows, budget)
        ctx.resume_later(claimer=claimer, batch=[m.dump() for m in run.members], start=run.done)
    jobs = {d.id: str(d.job_id) if d.job_id else None for d in claim.docs}
    mine = _settle(ctx, document_id, run.outcomes, jobs, sliced)
    if mine is None:  # still in progress
        return {"document_id": document_id, "status": "processing", "embedded": run.done}
    result = mine.result()
    if len(claim.docs) > 1:
        result["batch"] = len(claim.docs)
    return result


def _stale_after(host: Host) -> float:
    """A claim older than this belongs to a dead run (its slices renew theirs)."""
    return float(host.settings.ingest_time_limit + 60)


def _settle(
    ctx: TaskContext,
    document_id: str,
    outcomes: dict[str, Outcome],
    jobs: dict[str, str | None],
    sliced: bool,
) -> Outcome | None:
    """Settle the jobs (`jobs`: document id -> job id) of the members a run finished;
    this run's own outcome, if its document is one of them (None if it is not).

    The own job is the host's to complete when the work ends with this run; when the
    document is done (or failed) but the batch goes on in later slices, it is settled
    here and the later slices leave it alone."""
    host = ctx.host
    for doc_id, outcome in outcomes.items():
        member_job = jobs.get(doc_id)
        if doc_id != document_id and member_job:
            _settle_job(host, member_job, outcome)
    mine = outcomes.get(document_id)
    if mine is None:
        return None
    if mine.status == "failed" and not sliced:
        raise PermanentError(mine.error or "The document could not be ingested.", "INGEST_FAILED")
    if sliced and ctx.job_id:
        _settle_job(host, ctx.job_id, mine)
        ctx.leave_job()
    return mine


def _continue_batch(
    ctx: TaskContext, document_id: str, claimer: str, members: list[Member], start: int
) -> dict[str, Any]:
    """A later slice of a batch: renew the claims of the members still in progress
    (a deleted one has its vectors taken back out), embed a window of the passages from
    `start` until the slice's time is up, and mark the members it completes."""
    host = ctx.host
    k = knowledge(host)
    deps = k.ingest_deps()
    placed = spans(members)
    total = placed[-1][2] if placed else 0
    pending = [m for m, _, end in placed if end > start]
    states = k.db(
        lambda s: documents.renew_claims(
            s, [m.id for m in pending], claimer, stale_after=_stale_after(host)
        )
    )
    own_done = states.get(document_id, "done") not in ("ours", "gone")
    if own_done:
        # Settled by the slice that finished it, or by the run that took it over.
        ctx.leave_job()
    outcomes: dict[str, Outcome] = {}
    for member in pending:
        if states[member.id] == "gone":
            log.info("ingest.deleted_between_slices", document_id=member.id)
            outcomes[member.id] = take_back_member(deps, member)
    live = {m.id for m in pending if states[m.id] == "ours"}
    for collection in {m.collection for m in pending if m.id in outcomes}:
        deps.changed(collection)
    key = INGEST_SLICES_KEY.format(claimer)
    done = start
    if live:
        offset, window = _window(host, deps, key, placed, start, live, outcomes)
        skip = {m.id for m in members} - live

        def report(at: int) -> None:
            ctx.progress((offset + at) / max(1, total))

        reached, refused = embed_passages(
            deps,
            window,
            start=max(0, start - offset),  # a member after a failed one starts whole
            stop=ctx.slice_over,
            progress=report,
            skip=skip,
        )
        done = offset + reached
        for member in pending:
            if member.id in live and member.collection in refused:
                outcomes[member.id] = fail_member(deps, member, refused[member.collection])
                live.discard(member.id)
        finished = [m for m, _, end in placed if m.id in live and end <= done]
        outcomes.update(finish_members(deps, finished))
    more = done < total and any(end > done for m, _, end in placed if m.id in live)
    if more:
        ctx.resume_later(start=done)
    else:
        keeper.drop(host.redis, key)
    mine = _settle(ctx, document_id, outcomes, {m.id: m.job_id for m in members}, more)
    if mine is None:
        if own_done or not more:
            # Settled earlier (or taken over by another run): nothing of ours to report.
            return {"document_id": document_id, "status": "settled", "embedded": done}
        return {"document_id": document_id, "status": "processing", "embedded": done}
    return mine.result()


def _window(
    host: Host,
    deps: IngestDeps,
    key: str,
    placed: list[tuple[Member, int, int]],
    start: int,
    live: set[str],
    outcomes: dict[str, Outcome],
) -> tuple[int, list[Passage]]:
    """A window of the batch's passages from `start` (and where it begins): read from
    Redis, or prepared again from the original of the next live member (a member that
    fails to prepare again fails, with its reason, and leaves `live`)."""
    found = keeper.window(host.redis, key, start, SLICE_WINDOW)
    if found is not None:
        return start, [(r[0], r[1], r[2], r[3]) for r in found[1]]
    # Not kept (over the budget, expired, Redis restarted): chunking is deterministic.
    for member, begin, end in placed:
        if end > start and member.id in live:
            try:
                return begin, prepare_again(deps, member)
            except PermanentIngestError as exc:
                outcomes[member.id] = fail_member(deps, member, str(exc))
                live.discard(member.id)
    return start, []


def _settle_job(host: Host, job_id: str, outcome: Outcome) -> None:
    if outcome.status == "failed":
        error = {"message": outcome.error, "code": "INGEST_FAILED"}
        host.jobs.update(job_id, status="failed", error=error)
    else:
        host.jobs.update(
            job_id, status="completed", progress=1.0, result=outcome.result(), error=None
        )


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
# The runbook batch of an ingestion run (its claimer) cut into slices: a Redis list of
# [collection, id, text, metadata], the batch's work list.
INGEST_SLICES_KEY = "fm:knowledge:ingest-slices:{}"
# The most chunks a later slice takes (its time usually ends it first).
SLICE_WINDOW = 256


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
    """How many passages the file has, and SLICE_WINDOW of them from `start`; None when
    they are not kept (over the budget, expired, Redis restarted)."""
    found = keeper.window(host.redis, EVIDENCE_SLICES_KEY.format(file_id), start, SLICE_WINDOW)
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
