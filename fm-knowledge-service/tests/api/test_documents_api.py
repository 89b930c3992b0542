"""The document routes in-process (ASGI): validation, permissions, paging, stores down.

No worker runs here: uploads stay `processing`, which is all these rules need.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fm_common.testing.ports import free_port
from fm_common.testing.queues import queued
from fm_common.testing.s3_server import S3Server
from fm_common.testing.tokens import TokenIssuer
from knowledge_service.config import Settings
from knowledge_service.main import create_app


def _settings(**overrides: Any) -> Settings:
    return Settings(preload_model=False, verify_case_ownership=False, **overrides)


@pytest.fixture
async def client(
    redis_url: str,
    chroma_url: str,
    sqlite_url: str,
    data_dir: Path,
    token_issuer: TokenIssuer,
    storage_settings: dict[str, Any],
) -> AsyncIterator[httpx.AsyncClient]:
    settings = _settings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        database_url=sqlite_url,
        data_dir=data_dir,
        jwks_url=token_issuer.jwks_url,
        max_upload_bytes=1024 * 1024,
        **storage_settings,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://knowledge") as c:
            yield c


def _h(issuer: TokenIssuer, user: str, admin: bool = False) -> dict[str, str]:
    return issuer.headers(user, roles=["user", "admin"] if admin else ["user"])


async def _upload(
    c: httpx.AsyncClient,
    headers: dict[str, str],
    name: str = "a.md",
    data: bytes = b"# A\n\ntext",
    **form: str,
) -> httpx.Response:
    fields = {"title": form.pop("title", name), "document_type": "runbook", **form}
    return await c.post(
        "/api/v1/knowledge/documents",
        headers=headers,
        data=fields,
        files={"file": (name, data, "text/markdown")},
    )


async def test_upload_is_accepted_with_the_job_location(client, token_issuer) -> None:  # type: ignore[no-untyped-def]
    headers = _h(token_issuer, "u-1")
    resp = await _upload(client, headers, tags="db, etcd,db")
    assert resp.status_code == 202
    body = resp.json()
    assert body["status"] == "processing"
    assert resp.headers["location"] == f"/api/v1/knowledge/jobs/{body['job']['job_id']}"
    job = (await client.get(resp.headers["location"], headers=headers)).json()
    assert job["status"] == "queued"
    assert job["document_id"] == body["document_id"]
    doc = (
        await client.get(f"/api/v1/knowledge/documents/{body['document_id']}", headers=headers)
    ).json()
    assert doc["status"] == "processing"
    assert doc["tags"] == ["db", "etcd"]
    assert doc["scope"] == "personal"
    assert doc["size_bytes"] == len(b"# A\n\ntext")


async def test_global_upload_needs_admin(client, token_issuer) -> None:  # type: ignore[no-untyped-def]
    resp = await _upload(client, _h(token_issuer, "u-2"), scope="global")
    assert resp.status_code == 403
    assert resp.json()["code"] == "FORBIDDEN"
    ok = await _upload(client, _h(token_issuer, "admin-1", admin=True), scope="global")
    assert ok.status_code == 202


async def test_non_admin_cannot_delete_a_global_document(client, token_issuer) -> None:  # type: ignore[no-untyped-def]
    doc_id = (
        await _upload(client, _h(token_issuer, "admin-2", admin=True), scope="global")
    ).json()["document_id"]
    path = f"/api/v1/knowledge/documents/{doc_id}"
    assert (await client.get(path, headers=_h(token_issuer, "u-3"))).status_code == 200
    assert (await client.delete(path, headers=_h(token_issuer, "u-3"))).status_code == 403
    assert (
        await client.delete(path, headers=_h(token_issuer, "admin-3", admin=True))
    ).status_code == 204


@pytest.mark.parametrize(
    ("form", "name", "data", "status", "code"),
    [
        ({}, "empty.md", b"", 422, "EMPTY_FILE"),
        ({}, "big.log", b"x" * (1024 * 1024 + 1), 413, "PAYLOAD_TOO_LARGE"),
        ({}, "photo.png", b"\x89PNG....", 415, "UNSUPPORTED_FILE_TYPE"),
        ({"scope": "case"}, "a.md", b"text", 422, "CASE_ID_REQUIRED"),
        ({"scope": "team"}, "a.md", b"text", 422, "VALIDATION_ERROR"),
        ({"title": ""}, "a.md", b"text", 422, "VALIDATION_ERROR"),
    ],
)
async def test_bad_uploads_get_a_clear_4xx(
    client, token_issuer, form, name, data, status, code
) -> None:  # type: ignore[no-untyped-def]
    resp = await _upload(client, _h(token_issuer, "u-4"), name, data, **form)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code
    listed = (
        await client.get("/api/v1/knowledge/documents", headers=_h(token_issuer, "u-4"))
    ).json()
    assert listed["total_count"] == 0


async def test_another_users_case_is_404(client, token_issuer) -> None:  # type: ignore[no-untyped-def]
    case_id = str(uuid.uuid4())
    first = await _upload(client, _h(token_issuer, "owner"), scope="case", case_id=case_id)
    assert first.status_code == 202
    other = await _upload(client, _h(token_issuer, "intruder"), scope="case", case_id=case_id)
    assert other.status_code == 404
    assert other.json()["code"] == "CASE_NOT_FOUND"


async def test_list_shows_own_and_global_with_filters_and_paging(client, token_issuer) -> None:  # type: ignore[no-untyped-def]
    me, other = _h(token_issuer, "lister"), _h(token_issuer, "someone-else")
    for i in range(3):
        await _upload(client, me, f"mine{i}.md", title=f"Disk runbook {i}", tags="disk")
    await _upload(client, me, "net.md", title="Network flaps", tags="network")
    await _upload(client, other, "theirs.md", title="Their secret")
    await _upload(
        client, _h(token_issuer, "adm", admin=True), "g.md", title="Global", scope="global"
    )

    page = (await client.get("/api/v1/knowledge/documents?limit=2", headers=me)).json()
    assert page["total_count"] == 5
    assert len(page["documents"]) == 2
    assert page["has_more"] is True
    titles = {
        d["title"]
        for d in (await client.get("/api/v1/knowledge/documents?limit=100", headers=me)).json()[
            "documents"
        ]
    }
    assert "Their secret" not in titles
    assert "Global" in titles
    tagged = (await client.get("/api/v1/knowledge/documents?tags=disk", headers=me)).json()
    assert tagged["total_count"] == 3
    searched = (await client.get("/api/v1/knowledge/documents?q=network", headers=me)).json()
    assert [d["title"] for d in searched["documents"]] == ["Network flaps"]
    scoped = (await client.get("/api/v1/knowledge/documents?scope=global", headers=me)).json()
    assert [d["title"] for d in scoped["documents"]] == ["Global"]
    # No worker runs here: everything still waits for ingestion.
    for state, count in (("processing", 5), ("processed", 0), ("failed", 0)):
        page = (await client.get(f"/api/v1/knowledge/documents?status={state}", headers=me)).json()
        assert page["total_count"] == count, state
    for bad in (
        "limit=0",
        "limit=101",
        "offset=-1",
        "offset=9223372036854775808",  # past SQLite's integer: was a 500 (issue 16)
        "scope=team",
        "status=done",
    ):
        resp = await client.get(f"/api/v1/knowledge/documents?{bad}", headers=me)
        assert resp.status_code == 422, bad


async def test_search_rejects_bad_requests(client, token_issuer) -> None:  # type: ignore[no-untyped-def]
    headers = _h(token_issuer, "searcher")
    for body in (
        {"query": ""},
        {"query": "   "},
        {"query": "x", "limit": 0},
        {"query": "x", "limit": 101},
        {"query": "x", "mode": "fuzzy"},
        {"query": "x", "similarity_threshold": 1.5},
        {"query": "x", "scopes": ["team"]},
    ):
        resp = await client.post("/api/v1/knowledge/search", headers=headers, json=body)
        assert resp.status_code == 422, body
    resp = await client.post(
        "/api/v1/knowledge/search", headers=headers, json={"query": "x", "scopes": ["case"]}
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "CASE_ID_REQUIRED"


async def test_requests_without_a_token_are_401(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/api/v1/knowledge/documents")).status_code == 401
    assert (await client.post("/api/v1/knowledge/search", json={"query": "x"})).status_code == 401


async def test_vector_store_down_is_503_and_loses_nothing(
    redis_url, sqlite_url, data_dir, token_issuer
) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(
        redis_url=redis_url,
        chroma_url=f"http://127.0.0.1:{free_port()}",
        database_url=sqlite_url,
        data_dir=data_dir,
        jwks_url=token_issuer.jwks_url,
    )
    app = create_app(settings)
    headers = _h(token_issuer, "u-down")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://k") as c:
            doc_id = (await _upload(c, headers)).json()["document_id"]
            resp = await c.delete(f"/api/v1/knowledge/documents/{doc_id}", headers=headers)
            assert resp.status_code == 503
            assert int(resp.headers["retry-after"]) >= 1
            assert "Traceback" not in resp.text
            still = await c.get(f"/api/v1/knowledge/documents/{doc_id}", headers=headers)
            assert still.status_code == 200
            assert (await c.get("/ready")).status_code == 503


async def test_queued_ingestion_is_capped_per_user(
    redis_url, chroma_url, sqlite_url, data_dir, token_issuer
) -> None:  # type: ignore[no-untyped-def]
    # Issue 16 item 5: one user's indexing held both worker children for 7 minutes while
    # 34 other tasks waited. No worker runs here: every upload stays waiting.
    settings = _settings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        database_url=sqlite_url,
        data_dir=data_dir,
        jwks_url=token_issuer.jwks_url,
        max_pending_documents_per_user=3,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://knowledge") as c:
            hog = _h(token_issuer, "hog")
            codes = [(await _upload(c, hog, f"d{i}.md")).status_code for i in range(4)]
            assert codes == [202, 202, 202, 429]
            refused = await _upload(c, hog, "d5.md")
            assert refused.json()["code"] == "TOO_MANY_PENDING"
            assert int(refused.headers["retry-after"]) > 0
            # Another user is not held by the first one's queue.
            other = await _upload(c, _h(token_issuer, "other"), "mine.md")
            assert other.status_code == 202
    # And not behind it: the worker takes hog's first, the other user's, then hog's
    # second and third (each sent with its rank among its owner's as priority, ADR 0136).
    order = [q["id"] for q in queued(redis_url, "ingest")]
    assert order[1] == other.json()["job"]["job_id"]
    assert len(order) == 4


async def test_file_store_down_is_503_and_records_nothing(
    redis_url, chroma_url, sqlite_url, data_dir, token_issuer
) -> None:  # type: ignore[no-untyped-def]
    """The S3 store killed: an upload is 503 with Retry-After (never a 500), no document
    row and no job are left, and the service says it is not ready."""
    server = S3Server().start()
    try:
        settings = _settings(
            redis_url=redis_url,
            chroma_url=chroma_url,
            database_url=sqlite_url,
            data_dir=data_dir,
            jwks_url=token_issuer.jwks_url,
            retry_after_seconds=11,
            **server.settings(server.create_bucket()),
        )
        app = create_app(settings)
        headers = _h(token_issuer, "u-s3-down")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://k") as c:
                assert (await _upload(c, headers, "before.md")).status_code == 202
                server.kill()
                resp = await _upload(c, headers, "after.md")
                assert resp.status_code == 503, resp.text
                assert resp.headers["retry-after"] == "11"
                assert resp.json()["code"] == "STORAGE_UNAVAILABLE"
                listed = await c.get("/api/v1/knowledge/documents", headers=headers)
                assert [d["title"] for d in listed.json()["documents"]] == ["before.md"]
                ready = await c.get("/ready")
                assert ready.status_code == 503
                assert ready.json()["checks"]["storage"]["status"] != "healthy"
        assert len(queued(redis_url, "ingest")) == 1
    finally:
        server.stop()
