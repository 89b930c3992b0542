"""knowledge.ingest_document takes waiting documents into one batch (ADR 0057): the real
task (Celery `apply`), the real knowledge database, Chroma server and embedding model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest

import job_worker.runtime as runtime_mod
from fm_common.db import migrate_sync, utcnow
from fm_common.jobs import new_job
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


def _upload(rt: Runtime, doc_id: str, body: bytes, age: int = 0) -> str:
    """A stored original, its document row (waiting) and its queued job."""
    knowledge(rt).blobs.put(documents.file_key(doc_id), body)
    job_id = f"job-{doc_id}"
    rt.jobs.save(new_job("knowledge.ingest", "o", job_id=job_id, resource_id=doc_id))

    async def add(s: Any) -> None:
        from datetime import timedelta

        await DocumentRepository(s).add(
            Document(
                id=doc_id,
                owner_id="o",
                scope="personal",
                collection="user_o",
                title=doc_id,
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

    monkeypatch.setattr("knowledge_service.domain.ingest.tasks.ingest_batch", boom)
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

    monkeypatch.setattr("knowledge_service.domain.ingest.tasks.ingest_batch", boom)
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
