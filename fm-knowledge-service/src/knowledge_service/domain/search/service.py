"""Search: the caller's collections, semantic (Chroma) or hybrid (Chroma + BM25, RRF).

A search reads `user_<caller>`, `global` and, with a case id, `case_<id>` when the
caller owns that case; nothing else is ever queried, so another user's chunks cannot
appear however the query is phrased. Results from several collections merge by score.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fm_common.auth import Principal
from fm_common.contracts.knowledge import SearchRequest, SearchResponse, SearchResult
from fm_common.errors import Unprocessable
from knowledge_service.config import Settings
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.search import ranking
from knowledge_service.domain.vectors.bm25 import Bm25Index, Bm25Indexes, version_key
from knowledge_service.domain.vectors.embedder import Embedder
from knowledge_service.domain.vectors.store import (
    GLOBAL_COLLECTION,
    Hit,
    VectorStore,
    case_collection,
    user_collection,
)

log = structlog.get_logger("knowledge.search")

_INTERNAL_KEYS = ("tags_index", "origin")

# Where a search's time goes (bench/search_latency.py reads the same figures from the
# `knowledge.searched` log line): `collections` (which to search; the case owner for a
# case search), `embed` (the query vector), `chroma` (the vector queries), `bm25` (the
# BM25 side, concurrent with embed + chroma), `content` (texts of the semantic hits),
# `fuse` (fusion and the results).
PHASE_SECONDS = Histogram(
    "fm_knowledge_search_phase_seconds",
    "Time of each phase of a search",
    ["mode", "phase"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 1, 5),
)


@dataclass
class SearchDeps:
    settings: Settings
    store: VectorStore
    embedder: Embedder
    bm25: Bm25Indexes
    redis: Any


def fusion_weights(settings: Settings) -> ranking.FusionWeights:
    return ranking.FusionWeights(
        k=settings.rrf_k, bm25=settings.hybrid_bm25_weight, title=settings.hybrid_title_weight
    )


def _where(req: SearchRequest) -> dict[str, Any] | None:
    conds: list[dict[str, Any]] = []
    if req.document_type:
        conds.append({"document_type": req.document_type})
    if req.category:
        conds.append({"category": req.category})
    for tag in req.tags or []:
        conds.append({f"tag:{tag}": True})
    if not conds:
        return None
    return conds[0] if len(conds) == 1 else {"$and": conds}


def _keep(req: SearchRequest) -> Any:
    if not (req.document_type or req.category or req.tags):
        return None

    def keep(meta: dict[str, Any]) -> bool:
        if req.document_type and meta.get("document_type") != req.document_type:
            return False
        if req.category and meta.get("category") != req.category:
            return False
        return all(meta.get(f"tag:{t}") is True for t in req.tags or [])

    return keep


async def _collections(
    maker: async_sessionmaker[AsyncSession], principal: Principal, req: SearchRequest
) -> list[tuple[str, str]]:
    """(collection, scope) pairs the caller may read and asked for."""
    scopes = set(req.scopes or ("personal", "global", "case"))
    if req.scopes and "case" in scopes and not req.case_id:
        raise Unprocessable("Searching the case scope needs a case_id.", code="CASE_ID_REQUIRED")
    out: list[tuple[str, str]] = []
    if "personal" in scopes:
        out.append((user_collection(principal.user_id), "personal"))
    if "global" in scopes:
        out.append((GLOBAL_COLLECTION, "global"))
    if "case" in scopes and req.case_id:
        # The database is read only for a case search (most searches never touch it).
        async with maker() as session:
            owner = await documents.case_collection_owner(session, req.case_id)
        if owner is not None and owner != principal.user_id:
            raise documents.CaseNotFound()
        if owner == principal.user_id:
            out.append((case_collection(req.case_id), "case"))
    return out


def _result(
    hit_id: str, content: str, meta: dict[str, Any], score: float, scope: str, extra: dict[str, Any]
) -> SearchResult:
    public = {k: v for k, v in meta.items() if k not in _INTERNAL_KEYS and not k.startswith("tag:")}
    public["tags"] = [t for t in str(meta.get("tags_index", "")).split(",") if t]
    public.update(extra)
    return SearchResult(
        document_id=str(meta.get("document_id", "")),
        title=str(meta.get("title", "")),
        chunk_id=hit_id,
        content=content,
        score=round(score, 6),
        scope=meta.get("scope", scope)
        if meta.get("scope") in ("personal", "global", "case")
        else scope,  # type: ignore[arg-type]
        metadata=public,
    )


async def search(
    maker: async_sessionmaker[AsyncSession],
    principal: Principal,
    req: SearchRequest,
    deps: SearchDeps,
) -> SearchResponse:
    """Search the caller's collections; semantic by default, hybrid on request."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    # The query vector does not depend on which collections are searched, so it is
    # embedded while they are worked out (a case search asks the database for the
    # case's owner: 2 ms at p50, 6-15 ms at p99 on a busy machine).
    embedding = asyncio.ensure_future(_embed(deps, req.query, phases))
    keyword_task = None
    try:
        targets = await _collections(maker, principal, req)
        _lap(phases, "collections", started)
        if not targets:
            return SearchResponse(results=[], total_count=0, took_ms=0.0, mode=req.mode)
        where = _where(req)
        depth = (
            req.limit if req.mode == "semantic" else max(req.limit, deps.settings.hybrid_candidates)
        )
        # Hybrid: the BM25 side needs no vector, so it runs while the query is embedded
        # and Chroma answers (it used to wait for them: ADR 0165).
        if req.mode == "hybrid":
            keyword_task = asyncio.ensure_future(_keyword(deps, targets, req, depth, phases))
        vector = await embedding
        mark = time.perf_counter()
        # Hybrid asks Chroma for ids and scores only; the texts come from the BM25 index.
        content = keyword_task is None
        semantic = await asyncio.gather(
            *(
                asyncio.to_thread(deps.store.query, name, vector, depth, where, content)
                for name, _ in targets
            )
        )
        mark = _lap(phases, "chroma", mark)
        keyword = await keyword_task if keyword_task is not None else None
        mark = time.perf_counter()
    finally:
        for task in (embedding, keyword_task):
            if task is not None and not task.done():
                task.cancel()
        if embedding.done() and not embedding.cancelled():
            embedding.exception()  # retrieved: a failure after an early exit is not logged
    if keyword is None:
        results = _merge_semantic(targets, semantic, req)
    else:
        semantic = await _with_content(deps, targets, semantic, [ix for ix, _ in keyword])
        mark = _lap(phases, "content", mark)
        results = _fuse(
            targets, semantic, [hits for _, hits in keyword], req, fusion_weights(deps.settings)
        )
    _lap(phases, "fuse", mark)
    took = round((time.perf_counter() - started) * 1000, 2)
    for phase, seconds in phases.items():
        PHASE_SECONDS.labels(req.mode, phase).observe(seconds)
    log.info(
        "knowledge.searched",
        mode=req.mode,
        collections=len(targets),
        results=len(results),
        took_ms=took,
        phases_ms={k: round(v * 1000, 2) for k, v in phases.items()},
    )
    return SearchResponse(results=results, total_count=len(results), took_ms=took, mode=req.mode)


def _lap(phases: dict[str, float], phase: str, since: float) -> float:
    now = time.perf_counter()
    phases[phase] = now - since
    return now


async def _embed(deps: SearchDeps, query: str, phases: dict[str, float]) -> list[float]:
    started = time.perf_counter()
    vector = await asyncio.to_thread(deps.embedder.encode_query, query)
    _lap(phases, "embed", started)
    return vector


async def _keyword(
    deps: SearchDeps,
    targets: list[tuple[str, str]],
    req: SearchRequest,
    depth: int,
    phases: dict[str, float],
) -> list[tuple[Bm25Index, list[tuple[str, str, dict[str, Any], float]]]]:
    """The BM25 index and candidates of every target collection, at its current version."""
    started = time.perf_counter()
    versions = await deps.redis.mget([version_key(n) for n, _ in targets])  # one round trip
    found = await asyncio.gather(
        *(
            asyncio.to_thread(_bm25, deps.bm25, name, _v(ver), req, depth)
            for (name, _), ver in zip(targets, versions, strict=True)
        )
    )
    _lap(phases, "bm25", started)
    return found


def _v(raw: Any) -> str:
    if raw is None:
        return "0"
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _bm25(
    indexes: Bm25Indexes, collection: str, version: str, req: SearchRequest, k: int
) -> tuple[Bm25Index, list[tuple[str, str, dict[str, Any], float]]]:
    index = indexes.get(collection, version)
    return index, [
        (index.ids[pos], index.documents[pos], index.metadatas[pos], score)
        for pos, score in index.search(req.query, k, _keep(req))
    ]


async def _with_content(
    deps: SearchDeps,
    targets: list[tuple[str, str]],
    semantic: list[list[Hit]],
    indexes: list[Bm25Index],
) -> list[list[Hit]]:
    """The semantic hits with their texts and metadata, from the collection's BM25 index;
    a chunk written after the index was read comes from Chroma, one gone since is dropped."""
    out: list[list[Hit]] = []
    for (name, _), hits, index in zip(targets, semantic, indexes, strict=True):
        missing = [h.chunk_id for h in hits if index.chunk(h.chunk_id) is None]
        fetched = await asyncio.to_thread(deps.store.fetch, name, missing) if missing else {}
        filled = []
        for hit in hits:
            found = index.chunk(hit.chunk_id) or fetched.get(hit.chunk_id)
            if found is not None:
                filled.append(Hit(hit.chunk_id, found[0], found[1], hit.score))
        out.append(filled)
    return out


def _merge_semantic(
    targets: list[tuple[str, str]], semantic: list[list[Hit]], req: SearchRequest
) -> list[SearchResult]:
    hits: list[SearchResult] = []
    for (_, scope), found in zip(targets, semantic, strict=True):
        for hit in found:
            if req.similarity_threshold is not None and hit.score < req.similarity_threshold:
                continue
            hits.append(_result(hit.chunk_id, hit.content, hit.metadata, hit.score, scope, {}))
    hits.sort(key=lambda r: r.score, reverse=True)
    return hits[: req.limit]


def _fuse(
    targets: list[tuple[str, str]],
    semantic: list[list[Hit]],
    keyword: list[list[tuple[str, str, dict[str, Any], float]]],
    req: SearchRequest,
    weights: ranking.FusionWeights,
) -> list[SearchResult]:
    """Weighted reciprocal rank fusion of the semantic and the BM25 rankings (over all
    collections) plus the title match (`ranking.fuse`, ADR 0115)."""
    sem_all = sorted(
        (
            (hit.chunk_id, hit.content, hit.metadata, scope, hit.score)
            for (_, scope), found in zip(targets, semantic, strict=True)
            for hit in found
        ),
        key=lambda p: p[4],
        reverse=True,
    )
    kw_all = sorted(
        (
            (cid, content, meta, scope, score)
            for (_, scope), found in zip(targets, keyword, strict=True)
            for cid, content, meta, score in found
        ),
        key=lambda p: p[4],
        reverse=True,
    )
    ranked = ranking.fuse(sem_all, kw_all, req.query, weights, req.similarity_threshold)
    return [
        _result(e.chunk_id, e.content, e.meta, e.score, e.scope, e.extra)
        for e in ranked[: req.limit]
    ]
