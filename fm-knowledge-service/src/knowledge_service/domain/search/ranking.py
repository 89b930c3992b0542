"""Hybrid ranking: weighted reciprocal rank fusion plus a title (alert name) match.

Pure functions over the candidate lists of one search, so the service and the tuning
bench (`bench/retrieval.py --offline`) rank with the very same code. What was tried and
what the numbers kept: ADR 0115.

- Semantic and BM25 rankings (all searched collections merged) fuse by reciprocal rank:
  a chunk at rank r of a list gets `weight / (k + r)`; `k` 10 (the literature's 60 let
  the second list outvote a clear first place), BM25 weight 0.75.
- Field-aware lexical evidence: the runbook's title (for alert runbooks, the alert name,
  split at CamelCase) says what the runbook is about better than any passage of it. The
  share of the title's words that the query contains, times `title_weight / (k + 1)`, is
  added to each of the document's chunks: a full match weighs as much as a first place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from knowledge_service.domain.vectors.bm25 import tokenize

# Parts of alert names that say nothing about the runbook (almost every Kubernetes alert
# starts with "Kube"): they neither count for nor against a title match.
_GENERIC_TITLE_TERMS = frozenset({"kube"})


@dataclass(frozen=True, slots=True)
class FusionWeights:
    k: int = 10
    bm25: float = 0.75
    title: float = 1.0


@dataclass
class Fused:
    chunk_id: str
    content: str
    meta: dict[str, Any]
    scope: str
    score: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def query_terms(query: str) -> frozenset[str]:
    return frozenset(tokenize(query))


def title_match(terms: frozenset[str], title: str) -> float:
    """The share of the title's terms found in the query: for an alert name, the name
    itself and its CamelCase parts, stemmed ("etcdNoLeader": etcdnoleader, etcd, leader)."""
    parts = _title_terms(title)
    if not parts:
        return 0.0
    return sum(t in terms for t in parts) / len(parts)


@lru_cache(maxsize=4096)  # the same titles come back search after search
def _title_terms(title: str) -> tuple[str, ...]:
    return tuple(t for t in tokenize(title) if t not in _GENERIC_TITLE_TERMS)


def fuse(
    semantic: Iterable[tuple[str, str, dict[str, Any], str, float]],
    keyword: Iterable[tuple[str, str, dict[str, Any], str, float]],
    query: str,
    weights: FusionWeights,
    similarity_threshold: float | None = None,
) -> list[Fused]:
    """Fuse (chunk_id, content, metadata, scope, score) lists, each best first.

    The similarity threshold applies to the semantic side; a chunk found only by its
    words is kept (that is what hybrid search adds). Best first; ties keep the order of
    first appearance (semantic before keyword).
    """
    fused: dict[str, Fused] = {}
    for rank, (cid, content, meta, scope, score) in enumerate(semantic, start=1):
        if similarity_threshold is not None and score < similarity_threshold:
            continue
        entry = fused.setdefault(cid, Fused(cid, content, meta, scope))
        entry.score += 1.0 / (weights.k + rank)
        entry.extra["semantic_score"] = round(score, 6)
    for rank, (cid, content, meta, scope, score) in enumerate(keyword, start=1):
        entry = fused.setdefault(cid, Fused(cid, content, meta, scope))
        entry.score += weights.bm25 / (weights.k + rank)
        entry.extra["bm25_score"] = round(score, 4)
    if weights.title:
        terms = query_terms(query)
        seen: dict[str, float] = {}
        for entry in fused.values():
            title = str(entry.meta.get("title", ""))
            if title not in seen:
                seen[title] = title_match(terms, title)
            if seen[title]:
                entry.score += weights.title * seen[title] / (weights.k + 1)
                entry.extra["title_match"] = round(seen[title], 3)
    return sorted(fused.values(), key=lambda e: e.score, reverse=True)
