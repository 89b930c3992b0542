"""Re-index for a new model, refusal of another model's vectors, orphan cleanup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fm_common.blobs import LocalBlobStore
from knowledge_service.config import Settings
from knowledge_service.domain.documents.cleanup import purge_orphans
from knowledge_service.domain.documents.models import CaseCollection, Document
from knowledge_service.domain.documents.repository import DocumentRepository
from knowledge_service.domain.vectors.bm25 import Bm25Indexes
from knowledge_service.domain.vectors.embedder import get_embedder
from knowledge_service.domain.vectors.reindex import reindex
from knowledge_service.domain.vectors.store import ModelMismatch, VectorStore

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "etcd lost quorum after two members ran out of disk",
    "the ingress controller returns 502 for the payments service",
    "node clock drifted because chrony stopped",
]


def _doc(doc_id: str, collection: str) -> Document:
    return Document(
        id=doc_id,
        owner_id="o",
        scope="personal",
        collection=collection,
        title=doc_id,
        document_type="runbook",
        tags=[],
        tags_index=",",
        filename=f"{doc_id}.md",
        size_bytes=1,
        sha256="0" * 64,
        status="processed",
    )


def test_a_collection_refuses_vectors_of_another_model(chroma_url: str) -> None:
    old = VectorStore(chroma_url, "old/model")
    old.upsert("user_m", ["a:0"], [[0.1] * 8], ["text"], [{"document_id": "a"}])
    new = VectorStore(chroma_url, MINILM)
    with pytest.raises(ModelMismatch):
        new.upsert("user_m", ["b:0"], [[0.2] * 384], ["text"], [{"document_id": "b"}])
    # A search skips it rather than comparing vectors of two models.
    assert new.query("user_m", [0.2] * 384, 5) == []


def test_reindex_rebuilds_a_collection_for_the_new_model(chroma_url: str, kdb) -> None:  # type: ignore[no-untyped-def]
    old = VectorStore(chroma_url, "old/model")
    ids = [f"d{i}:0" for i in range(len(TEXTS))]
    metas = [
        {"document_id": f"d{i}", "chunk_index": 0, "embedding_model": "old/model"}
        for i in range(len(TEXTS))
    ]
    old.upsert("user_r", ids, [[float(i)] * 8 for i in range(len(TEXTS))], TEXTS, metas)
    kdb(lambda s: DocumentRepository(s).add(_doc("d0", "user_r")))
    embedder = get_embedder("all-MiniLM-L6-v2")
    store = VectorStore(chroma_url, embedder.name)

    result = reindex(store, embedder, kdb, "user_r", 32)
    assert result["status"] == "reindexed"
    assert result["chunks"] == len(TEXTS)
    assert store.collection_model("user_r") == MINILM
    assert store.get_collection("user_r-reindex") is None
    hits = store.query("user_r", embedder.encode_query("chrony clock drift on a node"), 3)
    assert hits[0].chunk_id == "d2:0"
    assert hits[0].metadata["embedding_model"] == MINILM
    doc = kdb(lambda s: DocumentRepository(s).get("d0"))
    assert doc.embedding_model == MINILM
    assert reindex(store, embedder, kdb, "user_r", 32)["status"] == "current"


def test_purge_removes_orphans_and_keeps_the_rest(chroma_url: str, kdb, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=data_dir, chroma_url=chroma_url)
    store = VectorStore(chroma_url, MINILM)
    vec = [[0.1] * 384]
    for cid, origin in (("keep:0", "document"), ("gone:0", "document"), ("ev:0", "evidence")):
        store.upsert("user_p", [cid], vec, ["t"], [{"document_id": cid[:-2], "origin": origin}])
    store.upsert("case_owned", ["c:0"], vec, ["t"], [{"document_id": "c", "origin": "evidence"}])
    store.upsert("case_orphan", ["x:0"], vec, ["t"], [{"document_id": "x", "origin": "evidence"}])
    kdb(lambda s: DocumentRepository(s).add(_doc("keep", "user_p")))

    async def claim(s):  # type: ignore[no-untyped-def]
        s.add(CaseCollection(case_id="owned", owner_id="o"))

    kdb(claim)
    blobs = LocalBlobStore(settings.knowledge_dir)
    files = settings.knowledge_dir / "files"
    old = time.time() - 7200
    for name in ("keep", "gone", "fresh"):
        blobs.put(f"files/{name}", b"x")
    os.utime(files / "gone", (old, old))
    os.utime(files / "keep", (old, old))

    result = purge_orphans(
        settings,
        blobs,
        store,
        Bm25Indexes(settings.bm25_dir, store),
        kdb,
        grace_seconds=3600,
        now=time.time(),
    )
    assert result["vectors_deleted"] == 1
    assert result["collections_dropped"] == 1
    assert store.count("user_p") == 2  # keep:0 and the evidence chunk
    assert store.get_collection("case_orphan") is None
    assert store.count("case_owned") == 1
    assert [b.key for b in blobs.list_blobs()] == ["files/fresh", "files/keep"]


def test_the_fast_query_path_matches_the_model_encode() -> None:
    import numpy as np

    embedder = get_embedder("all-MiniLM-L6-v2")
    for query in ("etcd has no leader", "kubelet certificates expire in the prod cluster soon"):
        fast = np.asarray(embedder.encode_query(query))
        full = np.asarray(embedder.encode([query])[0])
        assert fast.shape == (384,)
        assert float(fast @ full) > 0.99999
