"""Retrieval quality: does the right runbook come first, among look-alikes?

Our own questions (fm-knowledge-service/tests/eval/retrieval_questions.json: symptoms,
log lines and error messages in an engineer's words, each with its gold runbook(s), in
a tuning half and a held-out half that nothing was tuned on) over BOTH runbook corpora of
../shared/data/runbooks (prometheus-operator and OpenShift) indexed together in one
user's knowledge base. Reports recall@1/3/5 and MRR per half and overall, side by side:

  * each search mode over HTTP (`limit` 20, runbooks in the order of their first chunk);
  * the agent's actual retrieval (`agent_service.domain.turns.context._search` with the
    agent's own settings: its mode, `retrieval_limit` passages), and the same path in
    the other mode for comparison;
  * with --total-chunks N (default 100,000): search latency at one client after filling
    the user's collection with synthetic chunks (bench/knowledge.py's method), for the
    agent's mode and semantic.

Modes run against the real processes (redis, chroma, knowledge, a Celery worker with 2
children, as `make run`). `--offline` instead chunks and embeds the corpora in this
process (same code, cached in /tmp) and ranks with the service's ranking functions over
exact cosine and in-memory BM25: the quick loop used to compare candidates (ADR 0115).

Writes bench/results/retrieval.json and retrieval.md.

    nice -n 10 uv run --frozen --no-sync python bench/retrieval.py [--total-chunks 0]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from fm_common.devstack import ROOT, Stack
from fm_common.testing.tokens import TokenIssuer

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CORPORA = ROOT.parent / "shared" / "data" / "runbooks"
QUESTIONS = ROOT / "fm-knowledge-service" / "tests" / "eval" / "retrieval_questions.json"
HALVES = ("tune", "holdout", "all")


def load_questions() -> list[dict[str, Any]]:
    return list(json.loads(QUESTIONS.read_text()))


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPORA.rglob("*.md") if p.name != "SOURCE.md")


def metrics(questions: list[dict[str, Any]], rankings: list[list[str]]) -> dict[str, Any]:
    """recall@1/3/5 and MRR of runbook rankings (relative paths), per half and overall."""
    out: dict[str, Any] = {}
    for half in HALVES:
        picked = [
            (q, r) for q, r in zip(questions, rankings, strict=True) if half in ("all", q["half"])
        ]
        r1 = r3 = r5 = rr = 0.0
        misses = []
        for q, ranking in picked:
            gold = set(q["gold"])
            pos = next((i for i, d in enumerate(ranking) if d in gold), None)
            if pos is None:
                misses.append(q["id"])
                continue
            r1 += pos < 1
            r3 += pos < 3
            r5 += pos < 5
            rr += 1 / (pos + 1)
            if pos > 0:
                misses.append(q["id"])
        n = len(picked) or 1
        out[half] = {
            "questions": len(picked),
            "recall_at_1": round(r1 / n, 3),
            "recall_at_3": round(r3 / n, 3),
            "recall_at_5": round(r5 / n, 3),
            "mrr": round(rr / n, 3),
            "not_first": misses,
        }
    return out


def first_seen(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def knowledge_settings() -> Any:
    from knowledge_service.config import Settings

    return Settings()


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


@functools.cache
def knowledge_bench() -> Any:
    """bench/knowledge.py as a module (its polling and latency helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_knowledge", BENCH / "knowledge.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the real stack -----------------------------------------------------------------------
def ingest(stack: Stack, headers: dict[str, str], files: list[Path]) -> dict[str, str]:
    """Upload every runbook into the user's own knowledge base; document id -> path."""
    wait_processed = knowledge_bench().wait_processed
    ids: dict[str, str] = {}
    with httpx.Client(base_url=stack.url("knowledge"), timeout=120) as client:
        for path in files:
            corpus = path.relative_to(CORPORA).parts[0]
            while True:
                resp = client.post(
                    "/api/v1/knowledge/documents",
                    headers=headers,
                    data={
                        "title": path.stem,
                        "document_type": "runbook",
                        "scope": "personal",
                        "tags": f"runbook,{corpus}",
                    },
                    files={"file": (path.name, path.read_bytes(), "text/markdown")},
                )
                if resp.status_code != 429:  # too many of the user's documents waiting
                    break
                time.sleep(0.5)
            resp.raise_for_status()
            ids[str(resp.json()["document_id"])] = str(path.relative_to(CORPORA))
        wait_processed(client, headers, list(ids), "personal")
    return ids


def mode_rankings(
    stack: Stack,
    headers: dict[str, str],
    questions: list[dict[str, Any]],
    mode: str,
    paths: dict[str, str],
) -> tuple[list[list[str]], list[float]]:
    rankings, took = [], []
    with httpx.Client(base_url=stack.url("knowledge"), timeout=60) as client:
        for q in questions:
            resp = client.post(
                "/api/v1/knowledge/search",
                headers=headers,
                json={"query": q["question"], "limit": 20, "mode": mode},
            )
            resp.raise_for_status()
            body = resp.json()
            took.append(body["took_ms"])
            rankings.append(first_seen([paths[r["document_id"]] for r in body["results"]]))
    return rankings, took


def agent_rankings(
    stack: Stack,
    token: str,
    questions: list[dict[str, Any]],
    paths: dict[str, str],
    mode: str | None = None,
) -> tuple[list[list[str]], dict[str, Any]]:
    """The agent's own retrieval call (its settings, its client), per question."""
    from agent_service.config import Settings as AgentSettings
    from agent_service.domain.turns.context import _search
    from fm_common.clients.base import create_http_client
    from fm_common.clients.knowledge import KnowledgeClient
    from fm_common.context import bearer_token_var

    settings = AgentSettings()
    if mode is not None:
        settings = settings.model_copy(update={"retrieval_mode": mode})

    async def run() -> list[list[str]]:
        bearer_token_var.set(token)
        http = create_http_client()
        rt = SimpleNamespace(
            settings=settings, knowledge=KnowledgeClient(stack.url("knowledge"), http)
        )
        out = []
        try:
            for q in questions:
                passages, ok = await _search(rt, f"bench-case-{uuid.uuid4()}", q["question"])  # type: ignore[arg-type]
                assert ok, "the knowledge service did not answer"
                out.append(first_seen([paths[p.document_id] for p in passages]))
        finally:
            await http.aclose()
        return out

    return asyncio.run(run()), {
        "mode": settings.retrieval_mode,
        "passages": settings.retrieval_limit,
    }


def fill(stack: Stack, user_id: str, token: str, total: int) -> dict[str, Any]:
    """Fill the user's collection up to `total` chunks with noisy copies of its vectors."""
    import chromadb
    import numpy as np

    client = chromadb.HttpClient(host="127.0.0.1", port=stack.ports["chroma"])
    col = client.get_collection(f"user_{user_id}", embedding_function=None)
    real = col.get(include=["embeddings", "documents", "metadatas"])
    base = np.asarray(real["embeddings"], dtype=np.float32)
    need = max(0, total - col.count())
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    for start in range(0, need, 5000):
        n = min(5000, need - start)
        picks = rng.integers(0, len(base), n)
        vecs = base[picks] + rng.normal(0, 0.06, (n, base.shape[1])).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        col.add(
            ids=[f"synthetic-{start + i}:0" for i in range(n)],
            embeddings=vecs.tolist(),
            documents=[real["documents"][p] for p in picks],
            metadatas=[
                {**real["metadatas"][p], "document_id": f"synthetic-{start + i}", "chunk_index": 0}
                for i, p in enumerate(picks)
            ],
        )
    # The BM25 index follows the collection's version (the worker bumps it on writes).
    import redis

    r = redis.Redis(host="127.0.0.1", port=stack.ports["redis"])
    r.incr(f"fm:knowledge:cv:user_{user_id}")
    inserted = round(time.perf_counter() - started, 1)
    # The first hybrid search after the change rebuilds the BM25 index of the collection
    # (the worker would have, debounced, after a real ingestion): done here, not timed.
    started = time.perf_counter()
    resp = httpx.post(
        f"{stack.url('knowledge')}/api/v1/knowledge/search",
        headers={"Authorization": f"Bearer {token}"},
        json={"query": "warm up the BM25 index", "mode": "hybrid"},
        timeout=1800,
    )
    resp.raise_for_status()
    return {
        "chunks": col.count(),
        "insert_seconds": inserted,
        "bm25_rebuild_seconds": round(time.perf_counter() - started, 1),
    }


def online(args: argparse.Namespace) -> dict[str, Any]:
    bench_latency = knowledge_bench().bench_latency
    questions = load_questions()
    files = corpus_files()
    issuer = TokenIssuer().start()
    stack = knowledge_bench().knowledge_stack(issuer, "fm-bench-retrieval-")
    stack.start(timeout=300)
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "questions": len(questions),
        "runbooks": len(files),
    }
    try:
        user_id = f"eval-{uuid.uuid4()}"
        token = issuer.token(user_id, ttl=7200)
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        print(f"ingesting {len(files)} runbooks (load {load()}) ...", flush=True)
        paths = ingest(stack, headers, files)
        results["ingest_seconds"] = round(time.perf_counter() - started, 1)
        results["load_during_quality"] = load()
        rows: dict[str, Any] = {}
        for mode in ("semantic", "hybrid"):
            ranking, _ = mode_rankings(stack, headers, questions, mode, paths)
            rows[f"mode {mode} (limit 20)"] = metrics(questions, ranking)
        agent, conf = agent_rankings(stack, token, questions, paths)
        rows[f"agent ({conf['mode']}, {conf['passages']} passages): default"] = metrics(
            questions, agent
        )
        other = "semantic" if conf["mode"] == "hybrid" else "hybrid"
        before, _ = agent_rankings(stack, token, questions, paths, mode=other)
        rows[f"agent ({other}, {conf['passages']} passages)"] = metrics(questions, before)
        results["agent"] = conf
        results["quality"] = rows
        print(table(rows), flush=True)
        write(results)
        if args.total_chunks:
            print(f"filling to {args.total_chunks} chunks ...", flush=True)
            results["collection"] = fill(stack, user_id, token, args.total_chunks)
            results["latency"] = []
            # Semantic at limit 10 (what a client asks) and at the hybrid candidate depth
            # (Chroma returning as many): hybrid minus the latter is BM25 and the fusion.
            depth = max(10, knowledge_settings().hybrid_candidates)
            runs = dict.fromkeys([(conf["mode"], 10), ("semantic", 10), ("semantic", depth)])
            for mode, limit in runs:
                results["load_before_latency"] = load()
                row = bench_latency(stack, issuer, user_id, 1, args.requests, mode, limit)
                row["load_before"] = results["load_before_latency"]
                row["load"] = load()
                print(json.dumps(row), flush=True)
                results["latency"].append(row)
        write(results)
    finally:
        stack.stop()
        issuer.stop()
    return results


# -- offline: the same ranking code over exact cosine and in-memory BM25 -----------------
def offline() -> dict[str, Any]:
    import pickle

    import bm25s
    import numpy as np

    from knowledge_service.config import Settings
    from knowledge_service.domain.ingest.extract import detect_kind
    from knowledge_service.domain.ingest.pipeline import chunks_for_file, token_budget
    from knowledge_service.domain.search import ranking
    from knowledge_service.domain.vectors.bm25 import chunk_terms, tokenize
    from knowledge_service.domain.vectors.embedder import get_embedder

    questions = load_questions()
    settings = Settings()
    cache = Path(tempfile.gettempdir()) / "fm-retrieval-offline.pkl"
    if cache.exists():
        data = pickle.loads(cache.read_bytes())
    else:
        embedder = get_embedder(settings.embedding_model)
        tokens = token_budget(embedder)
        rows = []
        for path in corpus_files():
            found, _ = chunks_for_file(
                path, detect_kind(path.name, None, "runbook"), settings, path.stem, tokens
            )
            rel = str(path.relative_to(CORPORA))
            rows += [(f"{rel}:{c.index}", c.text, {"title": path.stem, "doc": rel}) for c in found]
        vecs = np.asarray(embedder.encode([r[1] for r in rows], batch_size=8), dtype=np.float32)
        qv = np.asarray([embedder.encode_query(q["question"]) for q in questions], np.float32)
        data = {"rows": rows, "vecs": vecs, "qv": qv}
        cache.write_bytes(pickle.dumps(data))
    rows, vecs, qv = data["rows"], data["vecs"], data["qv"]
    for row in rows:  # the runbook is the document the ranking groups passages by
        row[2]["document_id"] = row[2]["doc"]
    retriever = bm25s.BM25()
    retriever.index([chunk_terms(r[1], r[2]) or ["__empty__"] for r in rows], show_progress=False)
    depth = settings.hybrid_candidates
    before_depth = 50  # the candidates per list of ADR 0115

    def candidates(i: int) -> tuple[list[Any], list[Any]]:
        sims = vecs @ qv[i]
        top = np.argsort(-sims)[: max(depth, before_depth)]
        sem = [(*rows[j], "personal", float(sims[j])) for j in top]
        terms = [t for t in tokenize(questions[i]["question"]) if t in retriever.vocab_dict]
        kw: list[Any] = []
        if terms:
            docs, scores = retriever.retrieve(
                [terms], k=max(depth, before_depth), show_progress=False
            )
            kw = [
                (*rows[int(j)], "personal", float(s))
                for j, s in zip(docs[0], scores[0], strict=True)
                if s > 0
            ]
        return sem, kw

    lists = [candidates(i) for i in range(len(questions))]

    def rank(
        weights: ranking.FusionWeights | None, limit: int = 20, passages: bool = False
    ) -> list[list[str]]:
        out = []
        for q, (sem_all, kw_all) in zip(questions, lists, strict=True):
            cut = before_depth if passages else depth
            sem, kw = sem_all[:cut], kw_all[:cut]
            if weights is None:
                chunks = [s[2]["doc"] for s in sem[:limit]]
            elif passages:
                chunks = passage_fusion(sem, kw, q["question"], weights)[:limit]
            else:
                fused = ranking.fuse(sem, kw, q["question"], weights)
                chunks = [e.meta["doc"] for e in fused[:limit]]
            out.append(first_seen(chunks))
        return out

    current = ranking.FusionWeights(
        settings.rrf_k, settings.hybrid_bm25_weight, settings.hybrid_title_weight
    )
    before = ranking.FusionWeights(10, 0.75, 1.0)
    name = f"k={current.k}, bm25 {current.bm25}, title {current.title}, {depth} candidates"
    rows_out = {
        "semantic": metrics(questions, rank(None)),
        "passages fused, RRF k=60, equal weights, no title, 50 candidates (before 0115)": metrics(
            questions, rank(ranking.FusionWeights(60, 1.0, 0.0), passages=True)
        ),
        "passages fused, k=10, bm25 0.75, title 1.0, 50 candidates (ADR 0115)": metrics(
            questions, rank(before, passages=True)
        ),
        f"runbooks fused, k=10, bm25 0.75, title 1.0, {depth} candidates": metrics(
            questions, rank(before)
        ),
        f"runbooks fused, {name} (ADR 0165)": metrics(questions, rank(current)),
        "agent before ADR 0115 (semantic, 5 chunks)": metrics(questions, rank(None, 5)),
        "agent before (passages fused, ADR 0115, 5 chunks)": metrics(
            questions, rank(before, 5, passages=True)
        ),
        "agent now (runbooks fused, 5 chunks)": metrics(questions, rank(current, 5)),
    }
    import retrieval_tried  # beside this file: the candidates that did not help (ADR 0174)

    tried = retrieval_tried.candidates(
        questions, lists, rows, vecs, qv, get_embedder(settings.embedding_model), current.k
    )
    for tried_name, ranker in tried.items():
        rows_out[tried_name] = metrics(
            questions,
            [first_seen(ranker(i, sem[:depth], kw[:depth])) for i, (sem, kw) in enumerate(lists)],
        )
    print(table(rows_out))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval_offline.md").write_text(
        "# Retrieval ranking candidates (offline: exact cosine, in-memory BM25)\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}, load {load()}; "
        "`python bench/retrieval.py --offline`. See ADR 0115, ADR 0165 and ADR 0174 "
        "(the last nine rows: candidates that did not help).\n\n" + table(rows_out) + "\n"
    )
    return {"offline": rows_out, "load": load()}


def passage_fusion(semantic: list[Any], keyword: list[Any], query: str, weights: Any) -> list[str]:
    """The ranking of ADR 0115, for comparison: passages (not runbooks) fused by weighted
    reciprocal rank, plus the title match; runbooks in the order of their passages."""
    from knowledge_service.domain.search import ranking

    score: dict[str, float] = {}
    meta_of: dict[str, dict[str, Any]] = {}
    for weight, found in ((1.0, semantic), (weights.bm25, keyword)):
        for rank, (cid, _, meta, _, _) in enumerate(found, start=1):
            score[cid] = score.get(cid, 0.0) + weight / (weights.k + rank)
            meta_of[cid] = meta
    terms = ranking.query_terms(query)
    for cid, meta in meta_of.items():
        match = ranking.title_match(terms, meta["title"])
        score[cid] += weights.title * match / (weights.k + 1)
    return [meta_of[c]["doc"] for c in sorted(score, key=lambda c: -score[c])]


def table(rows: dict[str, Any]) -> str:
    lines = [
        "| ranking | half | questions | recall@1 | recall@3 | recall@5 | MRR |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        for half in HALVES:
            h = m[half]
            lines.append(
                f"| {name if half == 'tune' else ''} | {half} | {h['questions']} | "
                f"{h['recall_at_1']:.3f} | {h['recall_at_3']:.3f} | {h['recall_at_5']:.3f} | "
                f"{h['mrr']:.3f} |"
            )
    return "\n".join(lines)


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Retrieval quality benchmark",
        "",
        f"Measured {results['measured_at']} on {results['cpus']} CPUs (shared machine; load "
        f"averages 1/5/15 min during the quality runs: {results.get('load_during_quality')}). "
        f"{results['questions']} own questions (tuning half / held-out half) over "
        f"{results['runbooks']} runbooks of both corpora in one user's knowledge base; "
        f"ingestion took {results.get('ingest_seconds')} s. Runbooks ranked in the order of "
        "their first chunk; a question counts when any of its gold runbooks is there.",
        "",
        table(results["quality"]),
        "",
    ]
    if results.get("latency"):
        col = results["collection"]
        lines += [
            f"## Search latency with {col['chunks']} chunks in the user's collection",
            "",
            "| mode | limit | clients | requests | p50 ms | p99 ms | server p50 / p99 ms | "
            "load before | load after |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in results["latency"]:
            lines.append(
                f"| {row['mode']} | {row.get('limit', 10)} | {row['clients']} | "
                f"{row['requests']} | {row['p50_ms']} | {row['p99_ms']} | "
                f"{row['server_took_p50_ms']} / {row['server_took_p99_ms']} | "
                f"{row.get('load_before', '')} | {row['load']} |"
            )
        lines += ["", "Target: p99 < 50 ms at one client in the agent's mode.", ""]
    (RESULTS / "retrieval.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total-chunks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--offline", action="store_true")
    args = parser.parse_args()
    if not CORPORA.is_dir():
        raise SystemExit(f"the runbook corpora are not at {CORPORA}")
    if args.offline:
        offline()
    else:
        online(args)


if __name__ == "__main__":
    main()
