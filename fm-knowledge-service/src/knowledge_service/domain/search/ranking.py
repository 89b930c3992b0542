"""Hybrid ranking: weighted reciprocal rank fusion of runbooks plus a title (alert name) match.

Pure functions over the candidate lists of one search, so the service and the tuning
bench (`bench/retrieval.py --offline`) rank with the very same code. What was tried and
what the numbers kept: ADR 0115 (the fusion, the title match) and ADR 0165 (runbooks,
not passages, are what the lists vote on).

- The question is which runbook answers; a passage is only the evidence. So the semantic
  and BM25 rankings (all searched collections merged) vote on documents: a document
  ranked r-th in a list (by its best passage there) gets `weight / (k + r)`; `k` 10,
  both lists weighed alike. Fusing passages instead let a look-alike's one passage that
  both lists liked beat the right runbook whose best semantic and best BM25 passages
  were two different ones.
- Field-aware lexical evidence: the runbook's title (for alert runbooks, the alert name,
  split at CamelCase) says what the runbook is about better than any passage of it. The
  share of the title's words that the query contains, times `title_weight / (k + 1)`, is
  added to the document: a full match weighs as much as a first place.
- Passages come out in runbook order, the best passage of each runbook first (its own
  passage-level fusion decides which), then the second passages, and so on: the first
  `limit` results name as many different runbooks as they can.
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
    bm25: float = 1.0
    title: float = 1.0


@dataclass
class Fused:
    chunk_id: str
    content: str
    meta: dict[str, Any]
    scope: str
    score: float = 0.0  # the document's fused score
    passage: float = 0.0  # this passage's own fused score
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


Candidate = tuple[str, str, dict[str, Any], str, float]


def document_key(chunk_id: str, meta: dict[str, Any]) -> str:
    """The document a passage belongs to (its id; a passage without one stands alone)."""
    return str(meta.get("document_id") or chunk_id)


def fuse(
    semantic: Iterable[Candidate],
    keyword: Iterable[Candidate],
    query: str,
    weights: FusionWeights,
    similarity_threshold: float | None = None,
) -> list[Fused]:
    """Fuse (chunk_id, content, metadata, scope, score) lists, each best first.

    `score` of a result is its document's fused score (`extra["passage_score"]` the
    passage's own, which orders the passages of one document). Results come document by
    document, best first: every document's best passage, then every second passage, and
    so on. The similarity threshold applies to the semantic side; a chunk found only by
    its words is kept (that is what hybrid search adds). Ties keep the order of first
    appearance (semantic before keyword).
    """
    passages: dict[str, Fused] = {}
    documents: dict[str, float] = {}  # document -> fused score, in order of appearance
    titles: dict[str, str] = {}
    lists = (
        (
            "semantic_score",
            1.0,
            [c for c in semantic if similarity_threshold is None or c[4] >= similarity_threshold],
        ),
        ("bm25_score", weights.bm25, list(keyword)),
    )
    for key, weight, found in lists:
        ranked_documents: dict[str, int] = {}
        for rank, (cid, content, meta, scope, score) in enumerate(found, start=1):
            entry = passages.setdefault(cid, Fused(cid, content, meta, scope))
            entry.passage += weight / (weights.k + rank)
            entry.extra[key] = round(score, 6 if key == "semantic_score" else 4)
            doc = document_key(cid, meta)
            titles.setdefault(doc, str(meta.get("title", "")))
            documents.setdefault(doc, 0.0)
            if doc not in ranked_documents:
                ranked_documents[doc] = len(ranked_documents) + 1
                documents[doc] += weight / (weights.k + ranked_documents[doc])
    matches: dict[str, float] = {}
    if weights.title:
        terms = query_terms(query)
        for doc in documents:
            matches[doc] = title_match(terms, titles[doc])
            documents[doc] += weights.title * matches[doc] / (weights.k + 1)
    by_document: dict[str, list[Fused]] = {}
    for entry in passages.values():
        doc = document_key(entry.chunk_id, entry.meta)
        entry.score = documents[doc]
        entry.extra["passage_score"] = round(entry.passage, 6)
        if matches.get(doc):
            entry.extra["title_match"] = round(matches[doc], 3)
        by_document.setdefault(doc, []).append(entry)
    order = {doc: i for i, doc in enumerate(sorted(documents, key=lambda d: -documents[d]))}
    placed: list[tuple[int, int, Fused]] = []
    for doc, entries in by_document.items():
        entries.sort(key=lambda e: -e.passage)
        placed += [(nth, order[doc], e) for nth, e in enumerate(entries)]
    placed.sort(key=lambda p: (p[0], p[1]))
    return [e for _, _, e in placed]
