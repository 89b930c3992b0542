"""fm_common.clients.evidence.EvidenceClient against the real service over real HTTP."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator

import pytest

from evidence_service.domain.evidence.storage import FileStore
from evidence_service.main import create_app
from fm_common.clients.base import create_http_client
from fm_common.clients.evidence import EvidenceClient
from fm_common.errors import Forbidden, NotFound, PayloadTooLarge, Unavailable, UnsupportedMediaType
from fm_common.testing.ports import free_port
from fm_common.testing.servers import AppServer

LOG = b"2024-05-01T10:00:00Z ERROR connection refused to db:5432\n" * 2000


@pytest.fixture
async def evidence(settings) -> AsyncIterator[EvidenceClient]:
    server = AppServer(create_app(settings)).start()
    http = create_http_client()
    try:
        yield EvidenceClient(server.url, http)
    finally:
        await http.aclose()
        server.stop()


async def test_upload_bytes_then_read_metadata_and_content(evidence, alice):
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    created = await evidence.upload(alice.case_id, LOG, "db.log", description="db", token=token)
    assert created.size_bytes == len(LOG)
    assert created.source_type == "logs"
    meta = await evidence.get(created.file_id, token=token)
    assert meta.content_hash == hashlib.sha256(LOG).hexdigest()
    assert await evidence.read_content(created.file_id, token=token) == LOG
    assert await evidence.read_content(created.file_id, max_bytes=10, token=token) == LOG[:10]


async def test_upload_from_file_object_and_async_iterator(evidence, alice, tmp_path):
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    path = tmp_path / "from-file.log"
    path.write_bytes(LOG + b"file\n")
    with path.open("rb") as fh:
        from_file = await evidence.upload(alice.case_id, fh, "from-file.log", token=token)
    assert from_file.size_bytes == len(LOG) + 5

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(LOG), 7000):
            yield LOG[i : i + 7000]

    streamed = await evidence.upload(
        alice.case_id, chunks(), "pasted.txt", upload_source="paste", token=token
    )
    assert streamed.size_bytes == len(LOG)
    assert streamed.upload_source == "paste"


async def test_duplicate_upload_returns_existing_id(evidence, alice):
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    first = await evidence.upload(alice.case_id, LOG, "a.log", token=token)
    again = await evidence.upload(alice.case_id, LOG, "b.log", token=token)
    assert again.duplicate_of == first.file_id


async def test_list_details_analysis_and_case_cleanup(evidence, alice, token_issuer):
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    created = await evidence.upload(alice.case_id, LOG, "a.log", uploaded_at_turn=2, token=token)
    listed = await evidence.list_case_files(alice.case_id, token=token)
    assert [f.file_id for f in listed.files] == [created.file_id]
    details = await evidence.get_case_file(alice.case_id, created.file_id, token=token)
    assert details.uploaded_at_turn == 2
    service = token_issuer.token("worker", roles=["service"], on_behalf_of=alice.user_id)
    updated = await evidence.set_analysis(
        created.file_id, "completed", summary="one error", token=service
    )
    assert updated.analysis_status == "completed"
    await evidence.delete_case_files(alice.case_id, token=service)
    with pytest.raises(NotFound):
        await evidence.get(created.file_id, token=token)


async def test_existing_answers_which_files_of_the_acting_user_remain(
    evidence, alice, bob, token_issuer
):
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    kept = await evidence.upload(alice.case_id, LOG, "a.log", token=token)
    gone = await evidence.upload(alice.case_id, LOG + b"x\n", "b.log", token=token)
    await evidence.delete(gone.file_id, token=token)
    service = token_issuer.token("worker", roles=["service"], on_behalf_of=alice.user_id)
    found = await evidence.existing([kept.file_id, gone.file_id], token=service)
    assert found.file_ids == [kept.file_id]
    as_bob = token_issuer.token("worker", roles=["service"], on_behalf_of=bob.user_id)
    assert (await evidence.existing([kept.file_id], token=as_bob)).file_ids == []
    with pytest.raises(Forbidden):
        await evidence.existing([kept.file_id], token=token)


async def test_errors_are_typed(evidence, alice, bob):
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    with pytest.raises(UnsupportedMediaType):
        await evidence.upload(alice.case_id, b"PK\x03\x04" + b"\x00" * 64, "x.log", token=token)
    with pytest.raises(NotFound):
        await evidence.upload(bob.case_id, LOG, "x.log", token=token)
    with pytest.raises(NotFound):
        async with evidence.open_content("missing", token=token):
            pass
    created = await evidence.upload(alice.case_id, io.BytesIO(LOG + b"x"), "d.log", token=token)
    await evidence.delete(created.file_id, token=token)
    with pytest.raises(NotFound):
        await evidence.delete(created.file_id, token=token)


async def test_oversize_upload_raises_payload_too_large(evidence, alice, settings):
    token = alice.headers["Authorization"].removeprefix("Bearer ")

    async def endless() -> AsyncIterator[bytes]:
        line = b"2024-05-01T10:00:00Z INFO filler line for the size limit\n" * 1000
        for _ in range(settings.max_file_bytes // len(line) + 50):
            yield line

    with pytest.raises(PayloadTooLarge):
        await evidence.upload(alice.case_id, endless(), "huge.log", token=token)


async def test_service_down_is_unavailable(alice):
    http = create_http_client()
    try:
        client = EvidenceClient(f"http://127.0.0.1:{free_port()}", http, retries=0)
        with pytest.raises(Unavailable):
            await client.get("x", token="t")
        with pytest.raises(Unavailable):
            await client.upload("c", LOG, "a.log", token="t")
        with pytest.raises(Unavailable):
            async with client.open_content("x", token="t"):
                pass
    finally:
        await http.aclose()


async def test_download_in_progress_survives_a_concurrent_delete(
    evidence, alice, settings, blobs_of
):
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    content = b"".join(
        f"2024-05-01T10:00:00Z INFO line {i:06d} of a long download\n".encode()
        for i in range(16000)
    )
    created = await evidence.upload(alice.case_id, content, "long.log", token=token)
    received = bytearray()
    async with evidence.open_content(created.file_id, token=token) as resp:
        chunks = resp.aiter_bytes()
        received += await anext(chunks)
        await evidence.delete(created.file_id, token=token)
        async for chunk in chunks:
            received += chunk
    assert bytes(received) == content
    assert not blobs_of(settings).exists(FileStore.key_for(created.file_id))


async def test_delete_is_committed_before_the_answer_is_sent(
    evidence, alice, settings, monkeypatch, blobs_of
):
    """A slow commit must delay the 204, never follow it (read-your-writes)."""
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession

    token = alice.headers["Authorization"].removeprefix("Bearer ")
    created = await evidence.upload(alice.case_id, LOG, "slow.log", token=token)
    real_commit = AsyncSession.commit

    async def slow_commit(self):
        await asyncio.sleep(0.3)
        await real_commit(self)

    monkeypatch.setattr(AsyncSession, "commit", slow_commit)
    await evidence.delete(created.file_id, token=token)
    assert not blobs_of(settings).exists(FileStore.key_for(created.file_id))
    with pytest.raises(NotFound):
        await evidence.get(created.file_id, token=token)
