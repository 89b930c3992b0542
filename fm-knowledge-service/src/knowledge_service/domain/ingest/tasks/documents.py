"""Ingestion of uploaded documents (queue `ingest`): `knowledge.ingest_document`.

It runs the knowledge domain code in the worker (ADR 0055): the knowledge database, the
embedder and the Chroma server directly. A batch of runbooks is embedded in slices (ADR
0166). A case's evidence files are indexed by `tasks.evidence`.
"""

from __future__ import annotations

from typing import Any

import structlog

from fm_common.tasks import Host, Kwargs, PermanentError, TaskContext, record_job_failure, task
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.ingest import kept as keeper
from knowledge_service.domain.ingest.pipeline import (
    IngestDeps,
    Member,
    Outcome,
    Passage,
    PermanentIngestError,
    embed_passages,
    fail_document,
    fail_member,
    finish_members,
    ingest_batch,
    prepare_again,
    spans,
    take_back_member,
)
from knowledge_service.worker import knowledge

log = structlog.get_logger("worker.knowledge")

INGEST_DOCUMENT = "knowledge.ingest_document"
# The runbook batch of an ingestion run (its claimer) cut into slices: a Redis list of
# [collection, id, text, metadata], the batch's work list (ADR 0166).
INGEST_SLICES_KEY = "fm:knowledge:ingest-slices:{}"


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
    found = keeper.window(host.redis, key, start, keeper.SLICE_WINDOW)
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
