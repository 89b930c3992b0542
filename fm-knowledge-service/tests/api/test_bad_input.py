"""Hostile and broken files: a clear 4xx up front or a `failed` status, never a dead worker."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest


def _user() -> str:
    return f"user-{uuid.uuid4()}"


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("junk.md", lambda _: os.urandom(64 * 1024), "binary"),
        ("locked.pdf", lambda p: p.encrypted(), "encrypted"),
        ("broken.pdf", lambda p: p.corrupt(), "corrupt"),
        ("bomb.pdf", lambda p: p.bomb(), "too large"),
        ("fake.pdf", lambda _: b"just some text pretending to be a PDF", "not a pdf"),
        ("bad.json", lambda _: b'{"unterminated": [1, 2', "not valid json"),
        ("bad.yaml", lambda _: b"key: [unclosed\n  - : :", "not valid yaml"),
    ],
)
def test_bad_file_ends_failed_with_its_reason(kapi, pdfs, name, make, reason) -> None:  # type: ignore[no-untyped-def]
    user = _user()
    doc = kapi.ingest(user, name, make(pdfs))
    assert doc["status"] == "failed"
    assert reason in doc["error"].lower()
    assert doc["chunk_count"] == 0
    job = kapi.get(user, f"/api/v1/knowledge/jobs/{doc['metadata']['job_id']}").json()
    assert job["status"] == "failed"
    assert reason in job["error"].lower()


def test_worker_keeps_serving_after_bad_files(kapi, pdfs) -> None:  # type: ignore[no-untyped-def]
    user = _user()
    for name, data in (
        ("a.pdf", pdfs.bomb()),
        ("b.md", os.urandom(4096)),
        ("c.pdf", pdfs.corrupt()),
    ):
        assert kapi.upload(user, name, data).status_code == 202
    text = "Quorum of the lemon-etcd cluster was lost after two members ran out of disk."
    doc = kapi.ingest(user, "good.pdf", pdfs.text(text))
    assert doc["status"] == "processed", doc
    hits = kapi.search(user, "lemon-etcd quorum lost").json()["results"]
    assert hits[0]["document_id"] == doc["document_id"]
    assert "lemon-etcd" in hits[0]["content"]


def test_empty_file_is_rejected_up_front(kapi) -> None:  # type: ignore[no-untyped-def]
    resp = kapi.upload(_user(), "empty.md", b"")
    assert resp.status_code == 422
    assert resp.json()["code"] == "EMPTY_FILE"


def test_200_mb_upload_is_413_before_it_is_read(kapi) -> None:  # type: ignore[no-untyped-def]
    size = 200 * 1024 * 1024
    boundary = "fmboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbig\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="document_type"\r\n\r\nlog\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.log"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    sent = 0

    def body():  # type: ignore[no-untyped-def]
        nonlocal sent
        yield head
        block = b"2024-01-01 INFO all good\n" * 40_000
        while sent < size:
            sent += len(block)
            yield block
        yield tail

    headers = {
        **kapi.headers(_user()),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    try:
        resp = kapi.client.post("/api/v1/knowledge/documents", headers=headers, content=body())
    except httpx.WriteError:
        pytest.fail("the server closed the connection without answering")
    assert resp.status_code == 413
    assert resp.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert sent < size  # answered long before the body was sent


def test_executable_is_415(kapi) -> None:  # type: ignore[no-untyped-def]
    resp = kapi.upload(_user(), "tool.exe", b"MZ\x90\x00" * 100)
    assert resp.status_code == 415
    assert resp.json()["code"] == "UNSUPPORTED_FILE_TYPE"
