"""The collection routes in-process (ASGI): the admin's listing of models, and re-index
requests (202 + job, 403, 404, 409). No worker runs here: a queued re-index stays queued,
which is all these rules need (tests/api/test_reindex.py runs one with the worker)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from fm_common.jobs import JobStore
from fm_common.testing.tokens import TokenIssuer
from knowledge_service.config import Settings
from knowledge_service.domain.vectors.store import VectorStore
from knowledge_service.main import create_app

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
OLD = "old/model"


@pytest.fixture
async def app_and_client(
    redis_url: str, chroma_url: str, sqlite_url: str, data_dir: Path, token_issuer: TokenIssuer
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = Settings(
        preload_model=False,
        verify_case_ownership=False,
        redis_url=redis_url,
        chroma_url=chroma_url,
        database_url=sqlite_url,
        data_dir=data_dir,
        jwks_url=token_issuer.jwks_url,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://knowledge") as c:
            yield app, c


@pytest.fixture
def client(app_and_client: tuple[Any, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture
def collections(chroma_url: str) -> None:
    """`global` of an old model (2 chunks), `user_u1` of the configured one (1 chunk), and a
    re-index's work copy (never listed)."""
    old = VectorStore(chroma_url, OLD)
    old.upsert("global", ["a:0", "b:0"], [[0.1] * 8] * 2, ["a", "b"], [{"document_id": "a"}] * 2)
    new = VectorStore(chroma_url, MINILM)
    new.upsert("user_u1", ["c:0"], [[0.1] * 384], ["c"], [{"document_id": "c"}])
    new.upsert("user_u2-reindex", ["d:0"], [[0.1] * 384], ["d"], [{"document_id": "d"}])


def _admin(issuer: TokenIssuer, user: str = "admin-1") -> dict[str, str]:
    return issuer.headers(user, roles=["user", "admin"])


def _queued(redis_url: str) -> list[dict[str, Any]]:
    """The messages waiting on the maintenance queue (Celery's Redis transport)."""
    r = redis.Redis.from_url(redis_url)
    try:
        out = []
        for raw in r.lrange("maintenance", 0, -1):
            msg = json.loads(raw)
            body = json.loads(base64.b64decode(msg["body"]))
            out.append({"task": msg["headers"]["task"], "id": msg["headers"]["id"], "body": body})
        return out
    finally:
        r.close()


async def test_admin_lists_collections_with_their_models(client, token_issuer, collections) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/v1/knowledge/collections", headers=_admin(token_issuer))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["embedding_model"] == MINILM
    assert body["collections"] == [
        {"name": "global", "embedding_model": OLD, "chunk_count": 2, "current": False},
        {"name": "user_u1", "embedding_model": MINILM, "chunk_count": 1, "current": True},
    ]
    assert (body["total_count"], body["has_more"]) == (2, False)
    page = (
        await client.get(
            "/api/v1/knowledge/collections",
            params={"limit": 1, "offset": 1},
            headers=_admin(token_issuer),
        )
    ).json()
    assert [c["name"] for c in page["collections"]] == ["user_u1"]
    assert page["has_more"] is False


async def test_reindex_is_accepted_with_the_job_location(
    client, token_issuer, collections, redis_url
) -> None:  # type: ignore[no-untyped-def]
    headers = _admin(token_issuer)
    resp = await client.post("/api/v1/knowledge/collections/global/reindex", headers=headers)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    job_id = body["job"]["job_id"]
    assert body["collection"] == "global"
    assert body["embedding_model"] == MINILM
    assert body["job"]["status"] == "queued"
    assert resp.headers["location"] == f"/api/v1/knowledge/jobs/{job_id}"
    job = (await client.get(resp.headers["location"], headers=headers)).json()
    assert (job["kind"], job["status"]) == ("knowledge.reindex_collection", "queued")
    # The task is queued under the job's id, with the job id among its kwargs.
    [message] = _queued(redis_url)
    assert message["task"] == "knowledge.reindex_collection"
    assert message["id"] == job_id
    assert message["body"][1] == {"collection": "global", "job_id": job_id}


async def test_reindex_needs_the_admin_role(client, token_issuer, collections, redis_url) -> None:  # type: ignore[no-untyped-def]
    user = token_issuer.headers("u1", roles=["user"])
    resp = await client.post("/api/v1/knowledge/collections/user_u1/reindex", headers=user)
    assert resp.status_code == 403
    assert resp.json()["code"] == "FORBIDDEN"
    assert (await client.get("/api/v1/knowledge/collections", headers=user)).status_code == 403
    assert (await client.get("/api/v1/knowledge/collections")).status_code == 401
    assert _queued(redis_url) == []


@pytest.mark.parametrize(
    "name", ["user_nobody", "user_u2-reindex", "documents", "user_u1.x", "case_"]
)
async def test_reindex_of_an_unknown_collection_is_404(
    client, token_issuer, collections, redis_url, name
) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post(
        f"/api/v1/knowledge/collections/{name}/reindex", headers=_admin(token_issuer)
    )
    assert resp.status_code == 404
    assert resp.json()["code"] == "COLLECTION_NOT_FOUND"
    assert _queued(redis_url) == []


async def test_a_second_reindex_while_one_is_queued_or_running_is_409(
    app_and_client, token_issuer, collections, redis_url
) -> None:  # type: ignore[no-untyped-def]
    app, client = app_and_client
    path = "/api/v1/knowledge/collections/global/reindex"
    first = await client.post(path, headers=_admin(token_issuer))
    assert first.status_code == 202
    job_id = first.json()["job"]["job_id"]
    jobs = JobStore(app.state.redis)
    for status in ("queued", "running"):
        await jobs.update(job_id, status=status)
        again = await client.post(path, headers=_admin(token_issuer, "admin-2"))
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "REINDEX_IN_PROGRESS"
        assert again.json()["job"]["job_id"] == job_id
    # Another collection is not held up.
    other = await client.post(
        "/api/v1/knowledge/collections/user_u1/reindex", headers=_admin(token_issuer)
    )
    assert other.status_code == 202
    # Once the job has ended, the collection can be re-indexed again.
    await jobs.update(job_id, status="completed")
    after = await client.post(path, headers=_admin(token_issuer))
    assert after.status_code == 202
    assert after.json()["job"]["job_id"] != job_id
    assert len(_queued(redis_url)) == 3


async def test_queue_down_answers_503_and_leaves_the_collection_free(
    client, token_issuer, collections, redis_url, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import kombu.exceptions

    from knowledge_service.domain.collections import flows

    path = "/api/v1/knowledge/collections/global/reindex"

    def down(*_: Any, **__: Any) -> str:
        raise kombu.exceptions.OperationalError("broker down")

    monkeypatch.setattr(flows, "enqueue", down)
    resp = await client.post(path, headers=_admin(token_issuer))
    assert resp.status_code == 503
    assert resp.json()["code"] == "QUEUE_UNAVAILABLE"
    assert "retry-after" in resp.headers
    monkeypatch.undo()
    ok = await client.post(path, headers=_admin(token_issuer))
    assert ok.status_code == 202, ok.text
    assert len(_queued(redis_url)) == 1


def test_the_gateway_routes_and_documents_the_collection_routes(
    sqlite_url: str, data_dir: Path
) -> None:
    openapi = pytest.importorskip("gateway.domain.openapi")
    routing = pytest.importorskip("gateway.proxy.routing")
    app = create_app(Settings(preload_model=False, database_url=sqlite_url, data_dir=data_dir))
    merged = openapi.merge({}, {"knowledge": app.openapi()})
    for path, method in (
        ("/api/v1/knowledge/collections", "get"),
        ("/api/v1/knowledge/collections/{collection}/reindex", "post"),
    ):
        assert merged["paths"][path][method]["security"] == [{"bearerAuth": []}]
    reindex = merged["paths"]["/api/v1/knowledge/collections/{collection}/reindex"]["post"]
    assert {"202", "403", "404", "409"} <= set(reindex["responses"])
    assert routing.route("/api/v1/knowledge/collections/case_c1/reindex") == "knowledge"
    assert routing.route("/api/v1/knowledge/collections") == "knowledge"
