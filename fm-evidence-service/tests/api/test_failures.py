"""Failed writes leave nothing behind; dependencies that are down give 503 + Retry-After;
racing uploads of the same bytes store one file."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time

import httpx
import uvicorn
from sqlalchemy.exc import OperationalError

from evidence_service.config import Settings
from evidence_service.domain.evidence import flows, repository, storage
from evidence_service.main import create_app
from fm_common.testing.ports import free_port
from fm_common.testing.s3_server import S3Server, storage_backend


async def test_concurrent_uploads_of_same_bytes_store_exactly_one(kit, alice):
    content = b"2024-05-01T10:00:00Z ERROR disk full on /var\n" * 12000
    answers = await asyncio.gather(*(kit.upload(alice, content, "same.log") for _ in range(5)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 200, 200, 200, 201]
    [winner] = [r.json() for r in answers if r.status_code == 201]
    for r in answers:
        assert r.json()["file_id"] == winner["file_id"]
        if r.status_code == 200:
            assert r.json()["duplicate_of"] == winner["file_id"]
    assert len(kit.stored()) == 1
    assert await kit.rows() == 1


async def test_race_lost_on_unique_constraint_answers_duplicate_and_drops_its_copy(
    kit, alice, monkeypatch
):
    first = (await kit.upload(alice)).json()
    real_find = flows.Uploads._find
    calls = 0

    async def find_misses_once(self, *args):
        # The pre-check runs before the winner's row is visible: the race window.
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real_find(self, *args)

    monkeypatch.setattr(flows.Uploads, "_find", find_misses_once)
    resp = await kit.upload(alice)
    assert resp.status_code == 200
    assert resp.json()["duplicate_of"] == first["file_id"]
    assert calls == 2
    assert [p.name for p in kit.stored()] == [first["file_id"]]
    assert await kit.rows() == 1


async def test_disk_full_while_writing_is_507_and_leaves_nothing(kit, alice, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.TempFile, "write", full)
    resp = await kit.upload(alice)
    assert resp.status_code == 507
    assert resp.json()["code"] == "INSUFFICIENT_STORAGE"
    assert "No space" not in resp.text
    assert kit.stored() == []
    assert await kit.rows() == 0


async def test_failed_rename_is_503_with_retry_after_and_leaves_nothing(kit, alice, monkeypatch):
    def broken(self, temp):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(storage.FileStore, "place", broken)
    resp = await kit.upload(alice)
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    assert kit.stored() == []
    assert await kit.rows() == 0


async def test_database_failure_after_placing_removes_the_file(kit, alice, monkeypatch):
    async def db_down(self, row):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(repository.EvidenceRepository, "add", db_down)
    resp = await kit.upload(alice)
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"
    assert kit.stored() == []


async def test_case_service_down_is_503_with_retry_after_and_stores_nothing(
    settings, alice, stored_in
):
    down = settings.model_copy(update={"case_url": f"http://127.0.0.1:{free_port()}"})
    app = create_app(down)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://evidence") as client:
            resp = await client.post(
                "/api/v1/evidence",
                data={"case_id": alice.case_id},
                files={"file": ("a.log", b"2024-05-01 INFO x\n", "text/plain")},
                headers=alice.headers,
            )
            listed = await client.get(
                f"/api/v1/cases/{alice.case_id}/uploaded-files", headers=alice.headers
            )
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"
    assert resp.json()["code"] == "CASE_UNAVAILABLE"
    assert listed.status_code == 503
    assert stored_in(down) == []


async def test_case_checked_before_the_file_is_read_when_case_id_comes_first(
    kit, bob, alice, client, case_service
):
    sent = 0

    async def body():
        nonlocal sent
        boundary = "early"
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="case_id"\r\n\r\n'
            f'{alice.case_id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="a.log"\r\n\r\n'
        ).encode()
        for _ in range(50):
            sent += 1
            yield b"2024-05-01 INFO line\n" * 1000

    resp = await client.post(
        "/api/v1/evidence",
        content=body(),
        headers={**bob.headers, "Content-Type": "multipart/form-data; boundary=early"},
    )
    assert resp.status_code == 404
    assert sent <= 1
    assert kit.stored() == []


def _serve(app) -> tuple[uvicorn.Server, int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return server, port


async def test_client_disconnect_mid_upload_leaves_no_file_and_no_row(settings, alice, blobs_of):
    server, port = _serve(create_app(settings))
    blobs = blobs_of(settings)
    try:
        boundary = "cut"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="case_id"\r\n\r\n'
            f'{alice.case_id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="cut.log"\r\n\r\n'
        ).encode()
        request = (
            f"POST /api/v1/evidence HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {alice.headers['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: 900000\r\n\r\n"
        ).encode()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request + head + b"2024-05-01T10:00:00Z INFO partial line\n" * 8000)
        deadline = time.monotonic() + 10
        if storage_backend() == "local":
            while not blobs.pending():  # the upload is being written
                assert time.monotonic() < deadline, "the upload never started"
                await asyncio.sleep(0.02)
        else:
            # Under one S3 part nothing reaches the store before the commit.
            await asyncio.sleep(0.5)
        sock.close()
        deadline = time.monotonic() + 10
        while blobs.pending():
            assert time.monotonic() < deadline, "temp file left behind"
            await asyncio.sleep(0.05)
        assert blobs.list_blobs("files/") == []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            listed = await client.get(
                f"/api/v1/cases/{alice.case_id}/uploaded-files", headers=alice.headers
            )
        assert listed.json()["total_count"] == 0
    finally:
        server.should_exit = True


async def test_large_upload_is_streamed_not_held_in_memory(settings, alice):
    """64 MiB through the app while tracemalloc watches: the peak stays a few MiB."""
    import tracemalloc

    big = settings.model_copy(update={"max_file_bytes": 80 * 1024 * 1024})
    app = create_app(big)
    line = b"2024-05-01T10:00:00Z INFO streaming line that repeats for a while\n"
    chunk = line * (1024 * 1024 // len(line))
    total_chunks = 64

    async def body():
        boundary = "mem"
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="case_id"\r\n\r\n'
            f'{alice.case_id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.log"\r\n\r\n'
        ).encode()
        for _ in range(total_chunks):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
            tracemalloc.start()
            try:
                resp = await client.post(
                    "/api/v1/evidence",
                    content=body(),
                    headers={**alice.headers, "Content-Type": "multipart/form-data; boundary=mem"},
                )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert resp.status_code == 201, resp.text
    assert resp.json()["size_bytes"] == len(chunk) * total_chunks
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1048576:.1f} MiB"


async def test_s3_store_killed_is_503_with_retry_after_and_keeps_what_was_stored(
    settings, alice, stored_in
):
    """The S3 server dies: an upload and a download answer 503 STORAGE_UNAVAILABLE with
    Retry-After (never 500), no row is added; the file stored before is intact after."""
    server = S3Server().start()
    try:
        s3 = settings.model_copy(update=server.settings(server.create_bucket()))
        s3 = Settings.model_validate(s3.model_dump())  # the S3 secret as a SecretStr
        app = create_app(s3)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:

                async def upload(content: bytes) -> httpx.Response:
                    return await client.post(
                        "/api/v1/evidence",
                        data={"case_id": alice.case_id},
                        files={"file": ("a.log", content, "text/plain")},
                        headers=alice.headers,
                    )

                kept = (await upload(b"2024-05-01 INFO kept\n")).json()["file_id"]
                server.kill()
                resp = await upload(b"2024-05-01 INFO lost\n")
                assert resp.status_code == 503, resp.text
                assert resp.headers["retry-after"] == "7"
                assert resp.json()["code"] == "STORAGE_UNAVAILABLE"
                down = await client.get(f"/api/v1/evidence/{kept}/content", headers=alice.headers)
                assert down.status_code == 503
                assert down.headers["retry-after"] == "7"
                listed = await client.get(
                    f"/api/v1/cases/{alice.case_id}/uploaded-files", headers=alice.headers
                )
                assert [f["file_id"] for f in listed.json()["files"]] == [kept]
    finally:
        server.stop()
