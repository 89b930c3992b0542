"""Hybrid search over a real Chroma: ids and scores from Chroma, texts from the BM25 index.

Hybrid search asks Chroma for ids and distances only (reading the records was most of a
query's time at 100,000 chunks) and takes each hit's text and metadata from the
collection's BM25 index, which holds the same chunks (ADR 0165). A chunk written after
the index was read is not in it: its text must come from Chroma, not be dropped or
served empty.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fm_common.auth import Principal
from fm_common.contracts.knowledge import SearchRequest
from knowledge_service.config import Settings
from knowledge_service.domain.search.service import SearchDeps, search
from knowledge_service.domain.vectors.bm25 import Bm25Indexes
from knowledge_service.domain.vectors.embedder import get_embedder
from knowledge_service.domain.vectors.store import VectorStore

USER = "hybrid-content-user"
CHUNKS = {
    "etcd:0": ("etcdNoLeader", "etcd lost quorum after two members ran out of disk"),
    "ingress:0": ("IngressErrors", "the ingress controller returns 502 for the payments service"),
    "clock:0": ("NodeClockSkewDetected", "node clock drifted because chrony stopped"),
}


class _Versions:
    """Redis as the search reads it: the collection's version, never bumped here."""

    async def mget(self, keys: list[str]) -> list[bytes]:
        return [b"1" for _ in keys]


def _principal(user: str = USER) -> Principal:
    return Principal(
        user_id=user,
        username="h",
        roles=("user",),
        session_id=None,
        jti="j",
        expires_at=0,
        token="t",
    )


def _upsert(store: VectorStore, embedder: Any, chunks: dict[str, tuple[str, str]]) -> None:
    ids = list(chunks)
    texts = [chunks[c][1] for c in ids]
    metas = [{"document_id": c.split(":")[0], "title": chunks[c][0], "chunk_index": 0} for c in ids]
    store.upsert(f"user_{USER}", ids, embedder.encode(texts), texts, metas)


def test_hybrid_hits_carry_their_texts_even_when_written_after_the_index(
    chroma_url: str, tmp_path: Path
) -> None:
    embedder = get_embedder("all-MiniLM-L6-v2")
    store = VectorStore(chroma_url, embedder.name)
    _upsert(store, embedder, CHUNKS)
    deps = SearchDeps(
        settings=Settings(),
        store=store,
        embedder=embedder,
        bm25=Bm25Indexes(tmp_path / "bm25", store),
        redis=_Versions(),
    )

    def run(query: str, mode: str) -> Any:
        req = SearchRequest(query=query, limit=10, mode=mode, scopes=["personal"])  # type: ignore[arg-type]
        return asyncio.run(search(None, _principal(), req, deps))  # type: ignore[arg-type]

    first = run("etcd lost quorum", "hybrid")
    assert first.results[0].chunk_id == "etcd:0"
    assert first.results[0].content == CHUNKS["etcd:0"][1]
    assert first.results[0].title == "etcdNoLeader"
    assert all(r.content == CHUNKS[r.chunk_id][1] for r in first.results)

    # Written after the index was built, without a version bump: Chroma finds it by its
    # vector, the index has never seen it.
    late = {"members:0": ("etcdMembersDown", "two etcd members are down and quorum is at risk")}
    _upsert(store, embedder, late)
    assert deps.bm25.get(f"user_{USER}", "1").chunk("members:0") is None
    hybrid = {r.chunk_id: r for r in run("etcd members down, quorum at risk", "hybrid").results}
    assert hybrid["members:0"].content == late["members:0"][1]
    assert hybrid["members:0"].title == "etcdMembersDown"
    assert hybrid["members:0"].metadata["semantic_score"] > 0.5
    assert "bm25_score" not in hybrid["members:0"].metadata  # the index does not know it
    assert hybrid["etcd:0"].content == CHUNKS["etcd:0"][1]

    # Semantic mode still reads the texts from Chroma.
    semantic = {r.chunk_id: r for r in run("etcd members down", "semantic").results}
    assert semantic["members:0"].content == late["members:0"][1]


def test_a_query_for_ids_only_reads_no_texts(chroma_url: str) -> None:
    embedder = get_embedder("all-MiniLM-L6-v2")
    store = VectorStore(chroma_url, embedder.name)
    _upsert(store, embedder, CHUNKS)
    vector = embedder.encode_query("ingress 502")
    bare = store.query(f"user_{USER}", vector, 2, content=False)
    full = store.query(f"user_{USER}", vector, 2)
    assert [h.chunk_id for h in bare] == [h.chunk_id for h in full]
    assert [h.score for h in bare] == [h.score for h in full]
    assert bare[0].chunk_id == "ingress:0"
    assert (bare[0].content, bare[0].metadata) == ("", {})
    assert full[0].content == CHUNKS["ingress:0"][1]
    got = store.fetch(f"user_{USER}", ["ingress:0", "gone:0"])
    assert got == {"ingress:0": (CHUNKS["ingress:0"][1], full[0].metadata)}


def test_the_concurrent_search_returns_what_its_steps_give_one_after_another(
    chroma_url: str, tmp_path: Path
) -> None:
    """The search embeds while it works out the collections, and runs the BM25 side while
    Chroma answers (for latency only): its ranked output must be exactly that of the
    same steps run one after the other: ids, texts, scores and metadata, in order."""
    from knowledge_service.domain.search.service import (
        _bm25,
        _fuse,
        _with_content,
        fusion_weights,
    )

    user = "hybrid-order-user"
    name = f"user_{user}"
    embedder = get_embedder("all-MiniLM-L6-v2")
    store = VectorStore(chroma_url, embedder.name)
    runbooks = {
        **CHUNKS,
        "members:0": ("etcdMembersDown", "two etcd members are down and quorum is at risk"),
        "members:1": ("etcdMembersDown", "check the etcd pods and the disk of each member"),
        "quota:0": ("KubeQuotaExceeded", "namespace quota exceeded, pods cannot be created"),
        "quota:1": ("KubeQuotaAlmostFull", "namespace quota at 90 percent of its hard limit"),
        "crash:0": ("KubePodCrashLooping", "pod restarts over and over: CrashLoopBackOff"),
        "clock:1": ("NodeClockNotSynchronising", "ntp lost sync, the node clock is not synced"),
    }
    ids = list(runbooks)
    texts = [runbooks[c][1] for c in ids]
    metas = [
        {"document_id": c.split(":")[0], "title": runbooks[c][0], "chunk_index": int(c[-1])}
        for c in ids
    ]
    store.upsert(name, ids, embedder.encode(texts), texts, metas)
    settings = Settings()
    deps = SearchDeps(
        settings=settings,
        store=store,
        embedder=embedder,
        bm25=Bm25Indexes(tmp_path / "bm25", store),
        redis=_Versions(),
    )
    principal = _principal(user)
    targets = [(name, "personal")]
    for query in (
        "etcd members down, quorum at risk",
        "namespace quota almost full",
        "pod keeps restarting",
        "node clock drift chrony ntp",
    ):
        req = SearchRequest(query=query, limit=10, mode="hybrid", scopes=["personal"])
        got = asyncio.run(search(None, principal, req, deps))  # type: ignore[arg-type]
        depth = max(req.limit, settings.hybrid_candidates)
        semantic = [store.query(name, embedder.encode_query(query), depth, None, False)]
        index, keyword = _bm25(deps.bm25, name, "1", req, depth)
        filled = asyncio.run(_with_content(deps, targets, semantic, [index]))
        expected = _fuse(targets, filled, [keyword], req, fusion_weights(settings))
        assert len(got.results) >= 4
        assert [r.model_dump() for r in got.results] == [r.model_dump() for r in expected]
