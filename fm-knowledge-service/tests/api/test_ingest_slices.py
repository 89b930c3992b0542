"""Uploaded runbooks are ingested in slices (issue 16 item 5, ADR 0160, 0166), through the
real worker (one child, giving it back every FM_WORKER_SLICE_SECONDS, 5 s by default):
a quiet user's small runbook, uploaded while a noisy user's two large ones are being
ingested, is processed before they are (run to completion, it waited for both); the
large ones still end processed with every chunk once."""

from __future__ import annotations

import time
import uuid

from fm_common.devstack import Stack
from fm_common.testing import documents


def _status(kapi, user: str, doc_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(kapi.get(user, f"/api/v1/knowledge/documents/{doc_id}").json()["status"])


def _wait(predicate, what: str, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_a_quiet_users_runbook_is_processed_while_large_ones_are_in_progress(kapi) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = kapi.stack
    noisy, quiet = f"noisy-{uuid.uuid4()}", f"quiet-{uuid.uuid4()}"
    large = []
    for name in ("first", "second"):
        resp = kapi.upload(noisy, f"{name}.md", documents.long_runbook(name, 1000), title=name)
        assert resp.status_code == 202, resp.text
        large.append((resp.json()["document_id"], resp.headers["location"]))
    # The worker's child is on the noisy user's runbooks: some chunks are in.
    _wait(
        lambda: kapi.get(noisy, large[0][1]).json()["progress"] > 0,
        "the first large runbook started",
    )

    small = kapi.upload(quiet, "small.md", b"# Disk full\n\nDelete old logs in /var/log.\n")
    assert small.status_code == 202, small.text
    small_id = small.json()["document_id"]
    _wait(lambda: _status(kapi, quiet, small_id) != "processing", "the small runbook")
    assert _status(kapi, quiet, small_id) == "processed"
    # Read after the small one ended: the large ones had not.
    assert [_status(kapi, noisy, doc_id) for doc_id, _ in large] == ["processing"] * 2

    for doc_id, job_path in large:
        _wait(lambda d=doc_id: _status(kapi, noisy, d) != "processing", "a large runbook", 600)
        doc = kapi.get(noisy, f"/api/v1/knowledge/documents/{doc_id}").json()
        assert doc["status"] == "processed", doc
        total, distinct = kapi.chroma_count(f"user_{noisy}", doc_id)
        assert total == doc["chunk_count"] == distinct > 100
        # The job is settled right after its document is marked processed (CI once read
        # it in between): it ends completed.
        _wait(lambda p=job_path: kapi.get(noisy, p).json()["status"] != "running", "its job", 60)
        assert kapi.get(noisy, job_path).json()["status"] == "completed"
    assert stack.procs["worker"].poll() is None
