"""Kill the worker in the middle of an ingestion: the document still ends processed, once."""

from __future__ import annotations

import signal
import time
import uuid

from fm_common.devstack import Stack


def _big_text(words: int) -> bytes:
    lines = []
    for i in range(words // 12):
        lines.append(
            f"Step {i}: check the ingress controller logs for upstream timeouts on pool {i % 17}."
        )
    return "\n\n".join(lines).encode()


def test_worker_killed_mid_ingestion_redoes_it_without_duplicates(kapi) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = kapi.stack
    user = f"user-{uuid.uuid4()}"
    resp = kapi.upload(user, "long.md", _big_text(18_000), title="Long runbook")
    assert resp.status_code == 202
    doc_id = resp.json()["document_id"]
    job_path = resp.headers["location"]

    # Wait until the worker has upserted part of the document, then kill it outright.
    deadline = time.monotonic() + 120
    while True:
        job = kapi.get(user, job_path).json()
        if job["status"] == "running" and job["progress"] > 0:
            break
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    stack.stop_process("worker", signal.SIGKILL)
    assert stack.procs["worker"].poll() is not None
    partial = kapi.chroma_count(f"user_{user}", doc_id)[0]
    assert partial > 0
    assert kapi.get(user, f"/api/v1/knowledge/documents/{doc_id}").json()["status"] == "processing"

    stack.start_process("worker")
    deadline = time.monotonic() + 240
    while True:
        doc = kapi.get(user, f"/api/v1/knowledge/documents/{doc_id}").json()
        if doc["status"] != "processing":
            break
        assert time.monotonic() < deadline, "not redone after the restart"
        time.sleep(0.5)
    assert doc["status"] == "processed", doc
    total, distinct = kapi.chroma_count(f"user_{user}", doc_id)
    assert total == doc["chunk_count"] == distinct
    assert total > partial
    # The job record is closed right after the document is marked processed.
    deadline = time.monotonic() + 30
    while (job := kapi.get(user, job_path).json())["status"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "completed"
    assert job["attempts"] >= 2
