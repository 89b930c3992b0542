"""The hybrid ranking (weighted RRF of documents plus the title match) on hand-made lists."""

from __future__ import annotations

from typing import Any

from knowledge_service.domain.search.ranking import FusionWeights, fuse, query_terms, title_match
from knowledge_service.domain.vectors.bm25 import chunk_terms, tokenize


def _hit(cid: str, title: str, score: float) -> tuple[str, str, dict[str, Any], str, float]:
    return (
        cid,
        f"text of {cid}",
        {"title": title, "document_id": cid.split(":")[0]},
        "personal",
        score,
    )


def test_title_match_counts_the_alert_name_parts_the_query_names() -> None:
    terms = query_terms("the pod keeps crash looping after the deploy")
    # The terms of "KubePodCrashLooping": the whole name, pod, crash, loop ("Kube" counts
    # for nothing): the words match 3 of 4, naming the alert itself matches all.
    assert title_match(terms, "KubePodCrashLooping") == 0.75
    assert title_match(query_terms("KubePodCrashLooping firing"), "KubePodCrashLooping") == 1.0
    assert title_match(terms, "KubeDeploymentReplicasMismatch") == 0.0
    assert 0 < title_match(query_terms("etcd has no leader"), "etcdNoLeader") <= 1.0
    assert title_match(terms, "") == 0.0


def test_fusion_weighs_a_first_place_over_the_second_list() -> None:
    semantic = [_hit("a:0", "Alpha", 0.9), _hit("b:0", "Beta", 0.8)]
    keyword = [_hit("b:0", "Beta", 7.0), _hit("c:0", "Gamma", 5.0)]
    no_title = FusionWeights(k=10, bm25=0.75, title=0.0)
    ranked = fuse(semantic, keyword, "unrelated words", no_title)
    # b is second semantically and first by its words: 1/12 + 0.75/11 beats a's 1/11.
    assert [e.chunk_id for e in ranked] == ["b:0", "a:0", "c:0"]
    assert ranked[0].extra == {
        "semantic_score": 0.8,
        "bm25_score": 7.0,
        "passage_score": round(1 / 12 + 0.75 / 11, 6),
    }
    # With BM25 weighed at a twentieth, the semantic first place stays first.
    light = fuse(semantic, keyword, "unrelated words", FusionWeights(k=10, bm25=0.05, title=0.0))
    assert light[0].chunk_id == "a:0"


def test_a_title_that_names_the_problem_lifts_its_runbook() -> None:
    semantic = [_hit("x:0", "KubeQuotaExceeded", 0.6), _hit("y:0", "NodeClockSkewDetected", 0.58)]
    keyword: list[tuple[str, str, dict[str, Any], str, float]] = []
    query = "the node clock skew is several seconds"
    plain = fuse(semantic, keyword, query, FusionWeights(title=0.0))
    assert plain[0].chunk_id == "x:0"
    ranked = fuse(semantic, keyword, query, FusionWeights(title=1.0))
    assert ranked[0].chunk_id == "y:0"
    assert ranked[0].extra["title_match"] == 0.6  # node, clock, skew of 5 terms
    assert "title_match" not in ranked[1].extra


def test_runbooks_vote_not_passages() -> None:
    """The right runbook's best passage by meaning and its best passage by words are two
    different ones; a look-alike has one passage second in both lists. Fusing passages
    put the look-alike first; fusing runbooks puts the right one first (ADR 0165)."""
    semantic = [
        _hit("right:2", "PrometheusRemoteStorageFailures", 0.50),
        _hit("alike:0", "PrometheusRemoteWriteBehind", 0.47),
        _hit("other:0", "PrometheusBadConfig", 0.45),
        _hit("right:0", "PrometheusRemoteStorageFailures", 0.39),
    ]
    keyword = [
        _hit("right:0", "PrometheusRemoteStorageFailures", 9.7),
        _hit("alike:0", "PrometheusRemoteWriteBehind", 8.5),
        _hit("other:1", "PrometheusBadConfig", 6.0),
        _hit("right:2", "PrometheusRemoteStorageFailures", 5.1),
    ]
    weights = FusionWeights(k=10, bm25=1.0, title=0.0)
    ranked = fuse(semantic, keyword, "remote write failed to send batch", weights)
    # Per passage: alike:0 1/12 + 1/12 = 0.1667 beats right:2 and right:0 (1/11 + 1/14
    # = 0.1623 each). Per runbook: right is first in both lists, 2/11 = 0.1818.
    passages = {e.chunk_id: e.extra["passage_score"] for e in ranked}
    assert passages["alike:0"] > passages["right:2"] == passages["right:0"]
    assert ranked[0].meta["document_id"] == "right"
    assert ranked[0].score == 2 / 11
    assert ranked[1].chunk_id == "alike:0"
    assert ranked[1].score == 2 / 12
    # Then other's best passage; the second passages follow, in the runbooks' order.
    assert [e.meta["document_id"] for e in ranked] == ["right", "alike", "other", "right", "other"]
    assert ranked[3].score == ranked[0].score


def test_every_runbooks_best_passage_comes_before_any_second_one() -> None:
    semantic = [_hit("a:0", "Alpha", 0.9), _hit("a:1", "Alpha", 0.85), _hit("b:0", "Beta", 0.8)]
    keyword = [_hit("a:1", "Alpha", 6.0), _hit("c:3", "Gamma", 5.0), _hit("a:2", "Alpha", 4.0)]
    ranked = fuse(semantic, keyword, "q", FusionWeights(title=0.0))
    # a first (first in both lists), then b and c (second in one list each; b's
    # semantic place first), then a's other passages by their own fused scores.
    assert [e.chunk_id for e in ranked] == ["a:1", "b:0", "c:3", "a:0", "a:2"]
    scores = [e.score for e in ranked]
    assert scores[0] > scores[1] == scores[2]  # 2/11 (first in both) vs 1/12 each
    assert scores[3] == scores[4] == scores[0]  # a's further passages carry a's score


def test_the_similarity_threshold_drops_weak_semantic_hits_but_keeps_word_matches() -> None:
    semantic = [_hit("a:0", "Alpha", 0.9), _hit("b:0", "Beta", 0.2)]
    keyword = [_hit("c:0", "Gamma", 3.0)]
    ranked = fuse(semantic, keyword, "q", FusionWeights(), similarity_threshold=0.5)
    assert {e.chunk_id for e in ranked} == {"a:0", "c:0"}


def test_bm25_indexes_the_title_as_a_field_of_every_chunk() -> None:
    terms = chunk_terms("Diagnosis\n\ncheck the disk", {"title": "etcdHighFsyncDurations"})
    assert terms[: len(tokenize("Diagnosis\n\ncheck the disk"))] == tokenize(
        "Diagnosis\n\ncheck the disk"
    )
    assert {"fsync", "duration"} <= set(terms)
    assert chunk_terms("plain text", {}) == tokenize("plain text")
