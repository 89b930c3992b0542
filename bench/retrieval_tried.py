"""Ranking candidates that did not beat ADR 0165's fusion, kept so the record can be rerun.

Called by `bench/retrieval.py --offline` over the same candidate lists (exact cosine and
in-memory BM25 over both corpora, 20 candidates a list). Each candidate ranks runbooks:

  * score fusion: the runbooks' best semantic and best BM25 scores, min-max normalised in
    each list and mixed convexly (alpha for semantic), plus the title match;
  * a third ranked list in the fusion, from the same model's vectors: the runbook titles
    embedded (CamelCase split), each runbook's centroid, or its "Meaning" passages only;
  * a learned linear fusion: ten features of a (question, runbook) pair (the two
    reciprocal ranks, best cosine, best BM25 over the list's best, title match, title and
    centroid and Meaning cosines, the share of each list the runbook holds), weights fit
    by pairwise logistic regression (gold against every other candidate) on the tuning
    half only, so the held-out half says whether it generalises;
  * a third list from other views (ADR 0174's second round): whole runbooks as BM25's
    documents; the question's clauses embedded apart, a passage scoring its best clause;
    a token-level match with the model's token states (BERTScore's recall) over the top
    five runbooks' best passages, the nearest a bi-encoder comes to reading the question
    and the passage together.

See ADR 0174 for the numbers and what they mean.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

Ranker = Callable[[int, list[Any], list[Any]], list[str]]
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def candidates(
    questions: list[dict[str, Any]],
    lists: list[tuple[list[Any], list[Any]]],
    rows: list[Any],
    vecs: Any,
    qv: Any,
    embedder: Any,
    k: int,
) -> dict[str, Ranker]:
    """name -> ranker(question index, semantic candidates, BM25 candidates) -> runbooks."""
    import bm25s

    from knowledge_service.domain.search import ranking
    from knowledge_service.domain.vectors.bm25 import chunk_terms, tokenize

    docs = list(dict.fromkeys(r[2]["doc"] for r in rows))
    titles = {r[2]["doc"]: r[2]["title"] for r in rows}
    passages: dict[str, list[int]] = defaultdict(list)
    for j, r in enumerate(rows):
        passages[r[2]["doc"]].append(j)
    spelled = [" ".join(_CAMEL.findall(titles[d])) for d in docs]
    title_vecs = np.asarray(embedder.encode(spelled, batch_size=16), dtype=np.float32)
    centroids = np.stack([vecs[passages[d]].mean(0) for d in docs])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    meaning = {
        d: [j for j in passages[d] if rows[j][1].split("\n", 1)[0].endswith("> Meaning")]
        for d in docs
    }

    def doc_cosines(i: int) -> dict[str, np.ndarray]:
        per_passage = vecs @ qv[i]
        return {
            "title": title_vecs @ qv[i],
            "centroid": centroids @ qv[i],
            "meaning": np.asarray(
                [max((per_passage[j] for j in meaning[d]), default=-1.0) for d in docs]
            ),
        }

    cosines = [doc_cosines(i) for i in range(len(questions))]

    def best(found: list[Any]) -> dict[str, tuple[int, float, int]]:
        """runbook -> (rank by its best passage, that passage's score, passages listed)"""
        out: dict[str, tuple[int, float, int]] = {}
        count = Counter(c[2]["doc"] for c in found)
        for c in found:
            out.setdefault(c[2]["doc"], (len(out) + 1, c[4], count[c[2]["doc"]]))
        return out

    def convex(alpha: float, title: float) -> Ranker:
        def rank(i: int, sem: list[Any], kw: list[Any]) -> list[str]:
            terms = ranking.query_terms(questions[i]["question"])
            scores = []
            for found in (sem, kw):
                raw = {d: s for d, (_, s, _) in best(found).items()}
                lo, hi = min(raw.values(), default=0.0), max(raw.values(), default=1.0)
                scores.append({d: (s - lo) / ((hi - lo) or 1.0) for d, s in raw.items()})
            pool = list(dict.fromkeys([*scores[0], *scores[1]]))
            value = {
                d: alpha * scores[0].get(d, 0.0)
                + (1 - alpha) * scores[1].get(d, 0.0)
                + title * ranking.title_match(terms, titles[d])
                for d in pool
            }
            return sorted(pool, key=lambda d: -value[d])

        return rank

    def fused_with(
        i: int, sem: list[Any], kw: list[Any], extra: list[str], weight: float
    ) -> list[str]:
        """ADR 0165's fusion of the two lists and the title, plus `extra` (runbooks, best
        first) as a third list of the given weight."""
        listed = [(d, "", {"doc": d, "title": titles[d]}, "", 0.0) for d in extra]
        value: dict[str, float] = defaultdict(float)
        for found, w in ((sem, 1.0), (kw, 1.0), (listed, weight)):
            for d, (r, _, _) in best(found).items():
                value[d] += w / (k + r)
        terms = ranking.query_terms(questions[i]["question"])
        for d in value:
            value[d] += ranking.title_match(terms, titles[d]) / (k + 1)
        return sorted(value, key=lambda d: -value[d])

    def third_list(kind: str, weight: float) -> Ranker:
        def rank(i: int, sem: list[Any], kw: list[Any]) -> list[str]:
            top = np.argsort(-cosines[i][kind])[: len(sem)]
            return fused_with(i, sem, kw, list(np.take(docs, top)), weight)

        return rank

    # Whole runbooks as BM25's documents (IDF over runbooks, term counts over the whole
    # runbook), next to the passage-level BM25 of the service.
    whole = bm25s.BM25()
    whole.index(
        [[t for j in passages[d] for t in chunk_terms(rows[j][1], rows[j][2])] for d in docs],
        show_progress=False,
    )

    def whole_runbooks(weight: float) -> Ranker:
        def rank(i: int, sem: list[Any], kw: list[Any]) -> list[str]:
            terms = [t for t in tokenize(questions[i]["question"]) if t in whole.vocab_dict]
            extra: list[str] = []
            if terms:
                found, scores = whole.retrieve([terms], k=len(sem), show_progress=False)
                extra = [docs[int(j)] for j, s in zip(found[0], scores[0], strict=True) if s > 0]
            return fused_with(i, sem, kw, extra, weight)

        return rank

    # The question's clauses (split at quotes, punctuation and "and"/"but"/"with")
    # embedded apart; a passage scores its best clause. Questions of one clause add nothing.
    clause_vecs = [
        np.asarray(embedder.encode(c), dtype=np.float32) if len(c) > 1 else None
        for c in (_clauses(q["question"]) for q in questions)
    ]

    def clauses(weight: float) -> Ranker:
        def rank(i: int, sem: list[Any], kw: list[Any]) -> list[str]:
            extra: list[str] = []
            if clause_vecs[i] is not None:
                top = np.argsort(-(vecs @ clause_vecs[i].T).max(1))[: 3 * len(sem)]
                extra = list(dict.fromkeys(rows[j][2]["doc"] for j in top))[: len(sem)]
            return fused_with(i, sem, kw, extra, weight)

        return rank

    # Token-level matching with the same model (BERTScore's recall: each question token's
    # best cosine among a passage's token states, averaged), over each of the top runbooks'
    # three best passages; the top runbooks in that order are a third list. Runs the ONNX
    # backend's session (the default backend) for the token states.
    row_of = {r[0]: j for j, r in enumerate(rows)}
    states: dict[str, np.ndarray] = {}

    def token_states(text: str) -> np.ndarray:
        if text not in states:
            ids = np.asarray(embedder._token_ids([text]), dtype=np.int64)
            (hidden,) = embedder.model.run(
                ["last_hidden_state"],
                {
                    "input_ids": ids,
                    "attention_mask": np.ones_like(ids),
                    "token_type_ids": np.zeros_like(ids),
                },
            )
            h = hidden[0][1:-1]  # without [CLS] and [SEP]
            states[text] = h / np.linalg.norm(h, axis=1, keepdims=True)
        return states[text]

    def token_match(top: int, weight: float) -> Ranker:
        def rank(i: int, sem: list[Any], kw: list[Any]) -> list[str]:
            question = questions[i]["question"]
            fused = ranking.fuse(sem, kw, question, ranking.FusionWeights(k, 1.0, 1.0))
            chosen: dict[str, list[str]] = {}
            for e in fused:
                doc = e.meta["doc"]
                if doc in chosen or len(chosen) < top:
                    chosen.setdefault(doc, [])
                    if len(chosen[doc]) < 3:
                        chosen[doc].append(rows[row_of[e.chunk_id]][1])
            q = token_states(question)
            value = {
                d: max(float((q @ token_states(t).T).max(1).mean()) for t in texts)
                for d, texts in chosen.items()
            }
            return fused_with(i, sem, kw, sorted(value, key=lambda d: -value[d]), weight)

        return rank

    index = {d: n for n, d in enumerate(docs)}

    def features(i: int, sem: list[Any], kw: list[Any]) -> tuple[list[str], np.ndarray]:
        terms = ranking.query_terms(questions[i]["question"])
        s, b = best(sem), best(kw)
        pool = list(dict.fromkeys([*s, *b]))
        floor = min((v[1] for v in s.values()), default=0.0)
        top_bm25 = max((v[1] for v in b.values()), default=1.0) or 1.0
        rows_x = []
        for d in pool:
            sr, sc, sn = s.get(d, (0, floor, 0))
            br, bc, bn = b.get(d, (0, 0.0, 0))
            rows_x.append(
                [
                    1 / (k + sr) if sr else 0.0,
                    1 / (k + br) if br else 0.0,
                    sc,
                    bc / top_bm25,
                    ranking.title_match(terms, titles[d]),
                    *(cosines[i][kind][index[d]] for kind in ("title", "centroid", "meaning")),
                    sn / max(len(sem), 1),
                    bn / max(len(kw), 1),
                ]
            )
        return pool, np.asarray(rows_x, dtype=np.float64)

    def learned() -> Ranker:
        pairs = []
        for i, q in enumerate(questions):
            if q["half"] != "tune":
                continue
            pool, x = features(i, *lists[i])
            gold = [n for n, d in enumerate(pool) if d in q["gold"]]
            pairs += [x[g] - x[n] for g in gold for n in range(len(pool)) if n not in gold]
        diff = np.asarray(pairs)
        scale = np.abs(diff).mean(0) + 1e-9
        diff /= scale
        w = np.zeros(diff.shape[1])
        for _ in range(300):  # plain gradient descent on the logistic loss, lightly damped
            p = 1 / (1 + np.exp(diff @ w))
            w -= 0.5 * (-(diff * p[:, None]).mean(0) + 10 * w / len(diff))
        w /= scale

        def rank(i: int, sem: list[Any], kw: list[Any]) -> list[str]:
            pool, x = features(i, sem, kw)
            return [pool[n] for n in np.argsort(-(x @ w), kind="stable")]

        return rank

    return {
        "scores fused convexly (min-max, alpha 0.6, title 0.3)": convex(0.6, 0.3),
        "scores fused convexly (min-max, alpha 0.5, title 0.2)": convex(0.5, 0.2),
        "ADR 0165 + runbook titles embedded as a third list (weight 0.5)": third_list("title", 0.5),
        "ADR 0165 + runbook centroids as a third list (weight 0.5)": third_list("centroid", 0.5),
        "ADR 0165 + Meaning passages as a third list (weight 0.5)": third_list("meaning", 0.5),
        "learned linear fusion, 10 features, fit on the tuning half": learned(),
        "ADR 0165 + whole runbooks as BM25 documents, a third list (weight 0.5)": whole_runbooks(
            0.5
        ),
        "ADR 0165 + the question's clauses embedded apart, a third list (weight 0.5)": clauses(0.5),
        "ADR 0165 + token-level match of the top 5 runbooks, a third list (weight 1.0)": (
            token_match(5, 1.0)
        ),
    }


def _clauses(question: str) -> list[str]:
    parts = re.split(r"['\",:;]| and | but | with ", question)
    return [p.strip() for p in parts if len(p.split()) >= 2]
