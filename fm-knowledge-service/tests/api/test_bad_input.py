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


def _worker_children(kstack) -> list[int]:  # type: ignore[no-untyped-def]
    main = kstack.procs["worker"].pid
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == main:
            children.append(int(entry))
    return children


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} missing")


def _address_space_cap(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max address space"):
                return line.split()[3]
    raise AssertionError("no address space line")


# Issue 16, item 1: a 1.2 MB CSV of 100,000 columns took a worker child to 18.9 GB.
HOSTILE_SHAPES = [
    ("wide.csv", (",".join(f"c{i}" for i in range(100_000)) + "\n").encode(), "columns"),
    ("cell.csv", b"a,b\n" + b'"' + b"x" * 3_000_000 + b'",1\n', "cell"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("deep.yaml", b"a: " + b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
]


def test_hostile_shapes_fail_once_with_the_workers_memory_under_its_limit(kapi, kstack) -> None:  # type: ignore[no-untyped-def]
    user = _user()
    for name, data, reason in HOSTILE_SHAPES:
        doc = kapi.ingest(user, name, data)
        assert doc["status"] == "failed", (name, doc)
        assert reason in doc["error"].lower(), (name, doc["error"])
        job = kapi.get(user, f"/api/v1/knowledge/jobs/{doc['metadata']['job_id']}").json()
        assert job["status"] == "failed"
        assert job["attempts"] == 1  # failed once, not redelivered
    children = _worker_children(kstack)
    assert children
    limit_kb = 3_000_000  # FM_WORKER_MAX_MEMORY_PER_CHILD_KB's default
    for pid in children:
        # Each child's peak stayed under the per-child limit, and a hard cap exists.
        assert _status_kb(pid, "VmHWM") < limit_kb
        assert _address_space_cap(pid) != "unlimited"
    # And the worker still ingests.
    doc = kapi.ingest(user, "fine.csv", b"host,status\nweb-1,down\n")
    assert doc["status"] == "processed", doc


def test_the_running_worker_keeps_its_health_heartbeat(kstack) -> None:  # type: ignore[no-untyped-def]
    import redis

    from fm_common.heartbeat import heartbeat_key

    # What the gateway's /health reads to report the worker (issue 16 item 10).
    client = redis.Redis.from_url(kstack.redis_url)
    assert client.exists(heartbeat_key("worker"))
    assert 0 < client.ttl(heartbeat_key("worker")) <= 35
