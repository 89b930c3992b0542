"""A re-index started over HTTP, run by the real worker: after the embedding model changed,
a collection of the old model is skipped by search; the re-index rebuilds it and search
finds its documents again."""

from __future__ import annotations

import time
import uuid

import chromadb

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _listed(kapi, admin: dict[str, str], name: str) -> dict:  # type: ignore[no-untyped-def]
    offset = 0
    while True:
        page = kapi.client.get(
            "/api/v1/knowledge/collections",
            headers=admin,
            params={"limit": 500, "offset": offset},
        ).json()
        for item in page["collections"]:
            if item["name"] == name:
                return dict(item)
        assert page["has_more"], f"{name} is not listed"
        offset += 500


def _found(kapi, user: str, query: str, doc_id: str) -> bool:  # type: ignore[no-untyped-def]
    resp = kapi.search(user, query, scopes=["personal"])
    assert resp.status_code == 200, resp.text
    return any(r["document_id"] == doc_id for r in resp.json()["results"])


def test_reindex_over_http_rebuilds_a_collection_and_search_finds_it_again(kapi) -> None:  # type: ignore[no-untyped-def]
    user = f"reindex-{uuid.uuid4().hex[:12]}"
    tag = uuid.uuid4().hex[:6]
    text = (
        f"# Quokka-{tag} gateway drops websockets\n\n"
        f"The quokka-{tag} proxy closes websocket upgrades when its idle timeout is under "
        "30 seconds. Raise proxy_idle_timeout to 120 seconds and reload the gateway.\n"
    )
    doc = kapi.ingest(user, "quokka.md", text.encode(), title="Quokka websockets")
    assert doc["status"] == "processed", doc
    doc_id, chunks = doc["document_id"], doc["chunk_count"]
    query = f"quokka-{tag} websocket upgrades closed"
    collection = f"user_{user}"

    # What a changed FM_EMBEDDING_MODEL leaves behind: a collection recording another model.
    chroma = chromadb.HttpClient(host="127.0.0.1", port=kapi.stack.ports["chroma"])
    chroma.get_collection(collection).modify(metadata={"embedding_model": "old/model"})
    admin = kapi.headers(f"admin-{uuid.uuid4().hex[:8]}", admin=True)
    before = _listed(kapi, admin, collection)
    assert before == {
        "name": collection,
        "embedding_model": "old/model",
        "chunk_count": chunks,
        "current": False,
    }
    assert not _found(kapi, user, query, doc_id)  # skipped: vectors of another model

    resp = kapi.client.post(f"/api/v1/knowledge/collections/{collection}/reindex", headers=admin)
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    deadline = time.monotonic() + 240
    while (job := kapi.client.get(location, headers=admin).json())["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["status"] == "completed", job
    assert job["result"] == {
        "collection": collection,
        "status": "reindexed",
        "chunks": chunks,
        "model": MINILM,
    }
    assert _listed(kapi, admin, collection)["current"] is True
    assert _found(kapi, user, query, doc_id)
    assert kapi.get(user, f"/api/v1/knowledge/documents/{doc_id}").json()["embedding_model"] == (
        MINILM
    )
    # The job has ended: the collection may be re-indexed again (it is current: a no-op).
    again = kapi.client.post(f"/api/v1/knowledge/collections/{collection}/reindex", headers=admin)
    assert again.status_code == 202, again.text
