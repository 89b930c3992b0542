"""knowledge.ingest_document takes waiting documents into one batch (ADR 0057): the real
task (Celery `apply`), the real knowledge database, Chroma server and embedding model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import chromadb
import pytest

import job_worker.runtime as runtime_mod
from fm_common.db import migrate_sync, utcnow
from fm_common.jobs import new_job
from fm_common.testing.documents import long_runbook
from job_worker import tracking
from job_worker.app import app
from job_worker.config import Settings as WorkerSettings
from job_worker.runtime import Runtime
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.documents.models import Document
from knowledge_service.domain.documents.repository import DocumentRepository
from knowledge_service.main import MIGRATIONS
from knowledge_service.worker import KnowledgeWorker, knowledge

TEXT = "# {title}\n\nWhen {title} fires, check the {title} dashboards and restart the pod.\n"


@pytest.fixture
def rt(
    redis_url: str,
    sqlite_url: str,
    chroma_url: str,
    data_dir: Path,
    monkeypatch: Any,
    storage_settings: dict[str, Any],
) -> Iterator[Runtime]:
    # FM_TEST_STORAGE=s3: the originals are read from a bucket, not the data dir.
    for name, value in storage_settings.items():
        monkeypatch.setenv(f"FM_{name.upper()}", str(value))
    monkeypatch.setenv("FM_KNOWLEDGE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FM_CHROMA_URL", chroma_url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    migrate_sync(MIGRATIONS, sqlite_url)
    # One child: a run may take every waiting document (two would share them).
    runtime = Runtime(
        WorkerSettings(redis_url=redis_url, data_dir=data_dir, max_retries=0, concurrency=1),
        app,
    )
    runtime_mod.install(runtime)
    yield runtime
    runtime_mod.install(None)
    runtime.runner.close()


@pytest.fixture
def sent(monkeypatch: Any) -> list[tuple[str, dict[str, Any], str | None]]:
    """Tasks the code under test sends (recorded, not delivered)."""
    calls: list[tuple[str, dict[str, Any], str | None]] = []

    def send_task(name: str, kwargs: dict[str, Any], **options: Any) -> None:
        calls.append((name, kwargs, options.get("task_id")))

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def _upload(rt: Runtime, doc_id: str, body: bytes, age: int = 0, title: str = "") -> str:
    """A stored original, its document row (waiting) and its queued job."""
    knowledge(rt).blobs.put(documents.file_key(doc_id), body)
    job_id = f"job-{doc_id}"
    rt.jobs.save(new_job("knowledge.ingest", "o", job_id=job_id, resource_id=doc_id))

    async def add(s: Any) -> None:
        await DocumentRepository(s).add(
            Document(
                id=doc_id,
                owner_id="o",
                scope="personal",
                collection="user_o",
                title=title or doc_id,
                document_type="runbook",
                tags=[],
                tags_index=",",
                filename=f"{doc_id}.md",
                size_bytes=len(body),
                sha256="0" * 64,
                status="processing",
                job_id=job_id,
                created_at=utcnow() - timedelta(seconds=100 - age),
            ),
        )

    knowledge(rt).db(add)
    return job_id


def _run(doc_id: str) -> Any:
    kwargs = {"document_id": doc_id, "job_id": f"job-{doc_id}"}
    return app.tasks["knowledge.ingest_document"].apply(kwargs=kwargs).result


def _doc(rt: Runtime, doc_id: str) -> Document:
    doc = knowledge(rt).db(lambda s: documents.load(s, doc_id))
    assert doc is not None, doc_id
    return doc  # type: ignore[no-any-return]


def _job(rt: Runtime, doc_id: str) -> Any:
    job = rt.jobs.get(f"job-{doc_id}")
    assert job is not None, doc_id
    return job


def _chunks(rt: Runtime, doc_id: str) -> int:
    host, port = knowledge(rt).settings.chroma_url.rsplit(":", 1)
    client = chromadb.HttpClient(host=host.split("//")[-1], port=int(port))
    try:
        col = client.get_collection("user_o", embedding_function=None)
    except Exception:  # no collection yet
        return 0
    return len(col.get(where={"document_id": doc_id}, include=[])["ids"])


def test_one_run_ingests_the_waiting_documents_and_settles_every_job(rt: Runtime, sent) -> None:  # type: ignore[no-untyped-def]
    for i in range(4):
        _upload(rt, f"d{i}", TEXT.format(title=f"Alert{i}").encode(), age=i)
    _upload(rt, "junk", b"\x00\x01\xff\xfe" * 500, age=9)

    result = _run("d0")
    assert result == {"document_id": "d0", "status": "processed", "chunks": 1, "batch": 5}
    for i in range(4):
        doc = _doc(rt, f"d{i}")
        assert (doc.status, doc.chunk_count, doc.claimed_by) == ("processed", 1, None)
        assert _chunks(rt, f"d{i}") == 1
        assert _job(rt, f"d{i}").status == "completed"
    # The bad file failed alone, with its reason on the document and the job.
    junk, job = _doc(rt, "junk"), _job(rt, "junk")
    assert junk.status == "failed"
    assert job.status == "failed"
    assert junk.error
    assert job.error.message == junk.error
    # Its own run later finds it failed and leaves it so: job, vectors and the
    # collection's version (a bump would rebuild BM25) untouched.
    from knowledge_service.domain.vectors.bm25 import version_key

    version = rt.redis.get(version_key("user_o"))
    assert _run("junk") == {"document_id": "junk", "status": "failed", "error": junk.error}
    assert _job(rt, "junk").status == "failed"
    assert rt.redis.get(version_key("user_o")) == version
    # The batch members' own runs find the work done and settle nothing wrongly.
    assert _run("d2") == {"document_id": "d2", "status": "processed", "chunks": 1}
    assert _job(rt, "d2").status == "completed"
    assert not [name for name, _, _ in sent if name.endswith("ingest_document")]


def test_a_document_in_a_live_batch_is_left_to_that_run(rt: Runtime, sent) -> None:  # type: ignore[no-untyped-def]
    _upload(rt, "d0", TEXT.format(title="Held").encode())
    knowledge(rt).db(
        lambda s: documents.claim_batch(
            s, "d0", "job-other", max_documents=1, max_bytes=10_000, stale_after=600
        )
    )
    assert _run("d0") == {"document_id": "d0", "status": "batched", "by": "job-other"}
    # Its job is the holder's to settle: still running, not completed by this run.
    assert _job(rt, "d0").status == "running"
    assert _chunks(rt, "d0") == 0


def test_a_crashing_batch_fails_its_own_document_and_gives_the_others_back(
    rt: Runtime, sent, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        _upload(rt, f"d{i}", TEXT.format(title=f"Crash{i}").encode(), age=i)

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("knowledge_service.domain.ingest.tasks.documents.ingest_batch", boom)
    assert _run("d0") is None
    assert _doc(rt, "d0").status == "failed"
    assert _job(rt, "d0").status == "failed"
    # The others wait again, unclaimed, with their own runs sent again.
    for i in (1, 2):
        doc = _doc(rt, f"d{i}")
        assert (doc.status, doc.claimed_by) == ("processing", None)
    resent = sorted((k["document_id"], tid) for n, k, tid in sent if n.endswith("ingest_document"))
    assert resent == [("d1", "job-d1"), ("d2", "job-d2")]


def test_given_back_documents_stay_in_flight_when_the_broker_cannot_take_them(
    rt: Runtime, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        _upload(rt, f"d{i}", TEXT.format(title=f"Lost{i}").encode(), age=i)

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    def broker_down(*_: Any, **__: Any) -> Any:
        raise ConnectionError("broker down")

    monkeypatch.setattr("knowledge_service.domain.ingest.tasks.documents.ingest_batch", boom)
    monkeypatch.setattr(app, "send_task", broker_down)
    app.tasks["knowledge.ingest_document"].apply(kwargs={"document_id": "d0", "job_id": "job-d0"})
    assert _doc(rt, "d0").status == "failed"
    # Unclaimed, and recorded in flight: jobs.reap_stale sends them when they go stale.
    for i in (1, 2):
        assert _doc(rt, f"d{i}").claimed_by is None
        entry = tracking.get(rt.redis, f"job-d{i}")
        assert entry is not None
        assert (entry.task, entry.kwargs["document_id"]) == ("knowledge.ingest_document", f"d{i}")


def test_a_redelivered_run_works_alone_and_gives_its_old_batch_back(rt: Runtime, sent) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        _upload(rt, f"d{i}", TEXT.format(title=f"Redo{i}").encode(), age=i)
    # A first attempt claimed all three, then its worker died.
    knowledge(rt).db(
        lambda s: documents.claim_batch(
            s, "d0", "job-d0", max_documents=3, max_bytes=10_000, stale_after=600
        )
    )
    tracking.begin(rt.redis, "job-d0", "knowledge.ingest_document", "ingest", {}, "w@h")

    assert _run("d0") == {"document_id": "d0", "status": "processed", "chunks": 1}
    for i in (1, 2):
        doc = _doc(rt, f"d{i}")
        assert (doc.status, doc.claimed_by) == ("processing", None)
    resent = sorted(k["document_id"] for n, k, _ in sent if n.endswith("ingest_document"))
    assert resent == ["d1", "d2"]


def test_runs_of_a_worker_with_two_children_share_a_burst(rt: Runtime, sent) -> None:  # type: ignore[no-untyped-def]
    rt.settings = rt.settings.model_copy(update={"concurrency": 2})
    for i in range(6):
        _upload(rt, f"d{i}", TEXT.format(title=f"Share{i}").encode(), age=i)
    assert _run("d0")["batch"] == 3  # d0 with the newest, d5 and d4
    assert _run("d1")["batch"] == 2  # three left, shared by two children
    assert [_doc(rt, f"d{i}").status for i in range(6)] == [
        "processed",
        "processed",
        "processing",
        "processed",
        "processed",
        "processed",
    ]


def test_the_batch_size_setting_bounds_a_run(rt: Runtime, sent, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FM_KNOWLEDGE_INGEST_BATCH_DOCUMENTS", "2")
    rt._resources.pop(KnowledgeWorker, None)  # settings are read again
    for i in range(3):
        _upload(rt, f"d{i}", TEXT.format(title=f"Two{i}").encode(), age=i)
    assert _run("d0")["batch"] == 2
    assert _doc(rt, "d1").status == "processing"


# -- in slices (ADR 0160, 0166) --------------------------------------------------------


# Its handed-over slices are recorded by the `slices` fixture (conftest.py).
SLICED_TASK = "knowledge.ingest_document"


def _stored(rt: Runtime, doc_id: str) -> list[tuple[int, str, list[float]]]:
    """The document's chunks as the collection holds them: index, text, vector."""
    host, port = knowledge(rt).settings.chroma_url.rsplit(":", 1)
    client = chromadb.HttpClient(host=host.split("//")[-1], port=int(port))
    col = client.get_collection("user_o", embedding_function=None)
    got = col.get(where={"document_id": doc_id}, include=["documents", "metadatas", "embeddings"])
    rows = zip(got["metadatas"], got["documents"], got["embeddings"], strict=True)
    return sorted((m["chunk_index"], d, [round(float(x), 5) for x in e]) for m, d, e in rows)


def _version(rt: Runtime) -> int:
    from knowledge_service.domain.vectors.bm25 import version_key

    return int(rt.redis.get(version_key("user_o")) or 0)


def _age_claim(rt: Runtime, doc_id: str, minutes: int) -> None:
    async def age(s: Any) -> None:
        doc = await DocumentRepository(s).get(doc_id)
        doc.claimed_at = utcnow() - timedelta(minutes=minutes)

    knowledge(rt).db(age)


def test_a_large_runbook_is_ingested_in_slices_as_it_would_be_whole(rt: Runtime, slices) -> None:  # type: ignore[no-untyped-def]
    body = long_runbook("payments", 200)
    _upload(rt, "whole", body, title="Payments")
    rt.settings = rt.settings.model_copy(update={"slice_seconds": 0.0})
    whole = _run("whole")
    assert not slices
    rt.settings = rt.settings.model_copy(update={"slice_seconds": 1e-6})
    _upload(rt, "big", body, title="Payments")
    first = {"document_id": "big", "job_id": "job-big"}
    version = _version(rt)

    part = app.tasks["knowledge.ingest_document"].apply(kwargs=first, task_id="job-big").result
    assert part == {"document_id": "big", "status": "processing", "embedded": 8}
    total = whole["chunks"]
    assert total > 24
    key = "fm:knowledge:ingest-slices:job-big"
    assert rt.redis.llen(key) == total  # the passages kept for the later slices
    order = ["job-big"]
    while slices:
        kwargs, options = slices.pop(0)
        n = len(order)
        # The rest, at the priority the work came with, as the next slice: the claim's
        # holder, the batch, and where to start.
        assert options["task_id"] == f"job-big/{n}"
        assert kwargs["start"] == 8 * n
        assert kwargs["claimer"] == "job-big"
        assert kwargs["slice"] == {"of": "job-big", "n": n}
        order.append(options["task_id"])
        # Until the last slice: the document waits, claimed by the chain (another run
        # leaves it alone), its job running with its progress, the BM25 version as it was.
        doc, job = _doc(rt, "big"), _job(rt, "big")
        assert (doc.status, doc.claimed_by) == ("processing", "job-big")
        assert job.status == "running"
        assert 0 < job.progress < 1
        assert _version(rt) == version
        other = knowledge(rt).db(
            lambda s: documents.claim_batch(
                s, "big", "job-other", max_documents=1, max_bytes=10**6, stale_after=600
            )
        )
        assert other.state == "elsewhere"
        if n == 1:
            _age_claim(rt, "big", minutes=10)
        result = slices.deliver(kwargs, options).result
        if n == 1:
            # Each slice renews the chain's claim: a live chain never looks stale.
            renewed = _doc(rt, "big").claimed_at
            assert renewed is not None
            assert renewed.replace(tzinfo=None) > utcnow().replace(tzinfo=None) - timedelta(
                minutes=1
            )
        if n == 2:
            # Slice 2 delivered again after it handed over (its worker died before the
            # acknowledgement): nothing redone, slice 3 not sent twice.
            assert slices.deliver(kwargs, options).result is None
            assert len(slices) == 1
    assert result == {"document_id": "big", "status": "processed", "chunks": total}
    assert len(order) == -(-total // 8)
    # The same chunks and vectors as the document ingested whole.
    assert [(i, t) for i, t, _ in _stored(rt, "big")] == [
        (i, t) for i, t, _ in _stored(rt, "whole")
    ]
    for (_, _, a), (_, _, b) in zip(_stored(rt, "big"), _stored(rt, "whole"), strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-3
    doc, job = _doc(rt, "big"), _job(rt, "big")
    assert (doc.status, doc.chunk_count, doc.claimed_by) == ("processed", total, None)
    assert doc.preview == _doc(rt, "whole").preview
    assert (job.status, job.progress) == ("completed", 1.0)
    # One bump of the collection's version, by the last slice; nothing left behind.
    assert _version(rt) == version + 1
    assert not rt.redis.exists(key)
    assert not rt.redis.hexists("fm:knowledge:kept-passages", key)
    assert not [e for e in tracking.all_entries(rt.redis) if e.track_id.startswith("job-big")]


def test_a_runbook_deleted_between_slices_is_taken_back_out(rt: Runtime, slices) -> None:  # type: ignore[no-untyped-def]
    _upload(rt, "big", long_runbook("orders", 150))
    kwargs = {"document_id": "big", "job_id": "job-big"}
    app.tasks["knowledge.ingest_document"].apply(kwargs=kwargs, task_id="job-big")
    assert _chunks(rt, "big") == 8
    # Deleted as the API does it: vectors, row, files.
    knowledge(rt).store.delete_document("user_o", "big")

    async def drop(s: Any) -> None:
        repo = DocumentRepository(s)
        await repo.delete(await repo.get("big"))

    knowledge(rt).db(drop)
    documents.remove_files(knowledge(rt).blobs, "big")
    version = _version(rt)

    assert slices.deliver(*slices.pop(0)).result == {"document_id": "big", "status": "deleted"}
    assert not slices  # the chain ended
    assert _chunks(rt, "big") == 0
    assert _version(rt) == version + 1
    assert not rt.redis.exists("fm:knowledge:ingest-slices:job-big")
    assert _job(rt, "big").status == "completed"


def test_later_slices_prepare_their_passages_again_past_the_redis_budget(
    rt: Runtime, slices, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FM_KNOWLEDGE_SLICE_PASSAGES_MB", "0")
    rt._resources.pop(KnowledgeWorker, None)  # settings are read again
    _upload(rt, "big", long_runbook("ledger", 150))
    kwargs = {"document_id": "big", "job_id": "job-big"}
    app.tasks["knowledge.ingest_document"].apply(kwargs=kwargs, task_id="job-big")
    assert not rt.redis.exists("fm:knowledge:ingest-slices:job-big")  # not kept
    runs = 1
    while slices:
        result = slices.deliver(*slices.pop(0)).result
        runs += 1
    assert runs > 2
    assert result["status"] == "processed"
    stored = _stored(rt, "big")
    assert [i for i, _, _ in stored] == list(range(result["chunks"]))
    assert _doc(rt, "big").chunk_count == result["chunks"]


def test_a_batch_in_slices_marks_its_small_documents_first(rt: Runtime, slices) -> None:  # type: ignore[no-untyped-def]
    _upload(rt, "big", long_runbook("billing", 150), age=0)
    _upload(rt, "small", TEXT.format(title="Tiny").encode(), age=1)
    kwargs = {"document_id": "big", "job_id": "job-big"}
    part = app.tasks["knowledge.ingest_document"].apply(kwargs=kwargs, task_id="job-big").result
    assert part["status"] == "processing"
    # The small one was embedded first and is done, its job completed, after one slice.
    assert (_doc(rt, "small").status, _job(rt, "small").status) == ("processed", "completed")
    assert _doc(rt, "big").status == "processing"
    while slices:
        result = slices.deliver(*slices.pop(0)).result
    assert result["status"] == "processed"
    assert _job(rt, "big").status == "completed"
    assert _job(rt, "small").status == "completed"


def test_a_stale_claim_of_a_chain_whose_run_died_is_taken_over(rt: Runtime, slices) -> None:  # type: ignore[no-untyped-def]
    _upload(rt, "big", long_runbook("search", 150))
    kwargs = {"document_id": "big", "job_id": "job-big"}
    app.tasks["knowledge.ingest_document"].apply(kwargs=kwargs, task_id="job-big")
    follow = slices.pop(0)

    # The chain's slice was lost long ago (its claim outlived the hard time limit).
    _age_claim(rt, "big", minutes=120)
    rt.settings = rt.settings.model_copy(update={"slice_seconds": 0.0})
    # Another document's run takes it into its batch, and ingests it whole.
    _upload(rt, "d1", TEXT.format(title="Other").encode(), age=5)
    assert _run("d1")["batch"] == 2
    assert (_doc(rt, "big").status, _job(rt, "big").status) == ("processed", "completed")
    # The old chain's slice, delivered late, finds the document settled: no vectors
    # doubled, the job left as the taking run settled it.
    assert slices.deliver(*follow).result["status"] == "settled"
    total = _doc(rt, "big").chunk_count
    assert [i for i, _, _ in _stored(rt, "big")] == list(range(total))
    assert _job(rt, "big").status == "completed"


def test_a_failing_later_slice_leaves_a_settled_document_and_gives_the_rest_back(
    rt: Runtime, slices, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _upload(rt, "small", TEXT.format(title="Done").encode(), age=0)
    _upload(rt, "big", long_runbook("queue", 150), age=1)
    kwargs = {"document_id": "small", "job_id": "job-small"}
    first = app.tasks["knowledge.ingest_document"].apply(kwargs=kwargs, task_id="job-small")
    # Its own document, the smaller, is done in the first slice; the batch goes on.
    assert first.result == {"document_id": "small", "status": "processed", "chunks": 1, "batch": 2}
    assert _job(rt, "small").status == "completed"
    follow = slices.pop(0)
    assert follow[0]["document_id"] == "small"
    assert follow[0]["start"] == 8
    # A slice that goes on with the others leaves the settled job alone (progress too).
    slices.deliver(*follow)
    job = _job(rt, "small")
    assert (job.status, job.progress) == ("completed", 1.0)
    follow = slices.pop(0)

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("knowledge_service.domain.ingest.tasks.documents.embed_passages", boom)
    assert slices.deliver(*follow).result is None
    # The settled document and its job stay as they were; the large one waits again,
    # unclaimed, with its own run sent again; the kept passages are gone.
    assert (_doc(rt, "small").status, _job(rt, "small").status) == ("processed", "completed")
    assert _chunks(rt, "small") == 1
    big = _doc(rt, "big")
    assert (big.status, big.claimed_by) == ("processing", None)
    assert [k["document_id"] for k, _ in slices] == ["big"]
    assert not rt.redis.exists("fm:knowledge:ingest-slices:job-small")
