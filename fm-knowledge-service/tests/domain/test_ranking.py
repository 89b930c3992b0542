"""The hybrid ranking (weighted RRF plus the title match) on hand-made candidate lists."""

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
    assert ranked[0].extra == {"semantic_score": 0.8, "bm25_score": 7.0}
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
