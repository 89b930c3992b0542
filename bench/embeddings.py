"""Embedding backends side by side: ONNX Runtime (the default) vs sentence-transformers.

In one run, over the 108 prometheus-operator runbooks and the questions of
bench/knowledge.py:
  1. vectors agree: the cosine between the ONNX and the torch vector of every chunk (as
     the worker embeds it: batches of FM_KNOWLEDGE_EMBED_BATCH_SIZE) and of every
     question (as the service embeds it: encode_query); the bound is >= 0.999;
  2. query embedding p50 / p90 of each backend on one thread (the service's setting),
     the two interleaved query by query so that load drifts hit both alike;
  3. raw document embedding, chunks/s, one thread (a worker child's share of 2 CPUs);
  4. ONNX variants on the same figures: ORT's graph optimisation levels, the graph
     fused offline by onnxruntime.transformers (Attention, SkipLayerNorm, BiasGelu),
     and int8 dynamic quantization (kept only if the cosine bound holds);
  5. the real stack per backend (knowledge service + a Celery worker with 2 children,
     as `make run`): ingestion of the corpus from upload to searchable (chunks/s) and
     recall@5 of the questions, semantic and hybrid.
The machine is shared: every figure carries the 1-minute load average when taken.
Writes bench/results/embeddings.json and embeddings.md.

    uv run --frozen --no-sync python bench/embeddings.py [--no-stack] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from knowledge import (
    QUESTIONS,
    RESULTS,
    RUNBOOKS,
    bench_ingestion,
    bench_recall,
    knowledge_stack,
    pct,
)

from fm_common.testing.tokens import TokenIssuer

MODEL = "all-MiniLM-L6-v2"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def corpus() -> tuple[list[Path], list[str], list[str]]:
    from knowledge_service.config import Settings
    from knowledge_service.domain.ingest.extract import detect_kind
    from knowledge_service.domain.ingest.pipeline import chunks_for_file, token_budget
    from knowledge_service.domain.vectors.embedder import get_embedder

    settings = Settings()
    tokens = token_budget(get_embedder(settings.embedding_model, backend="onnx"))
    files = sorted(p for p in RUNBOOKS.rglob("*.md") if p.name != "SOURCE.md")
    texts: list[str] = []
    for path in files:
        found, _ = chunks_for_file(
            path, detect_kind(path.name, None, "runbook"), settings, path.stem, tokens
        )
        texts.extend(c.text for c in found)
    return files, texts, [q for q, _ in QUESTIONS]


def cosines(a: list[list[float]], b: list[list[float]]) -> list[float]:
    import numpy as np

    x, y = np.asarray(a), np.asarray(b)
    return [float(v) for v in (x * y).sum(axis=1)]


def query_times(
    embedders: dict[str, Any], queries: list[str], rounds: int
) -> dict[str, list[float]]:
    """ms per encode_query, the backends interleaved per query."""
    times: dict[str, list[float]] = {k: [] for k in embedders}
    for e in embedders.values():
        for q in queries[:5]:
            e.encode_query(q)  # warm
    for r in range(rounds):
        for i, q in enumerate(queries):
            text = f"{q} #{r}-{i}"
            for name, e in embedders.items():
                t0 = time.perf_counter()
                e.encode_query(text)
                times[name].append((time.perf_counter() - t0) * 1000)
    return times


def doc_rate(embedder: Any, texts: list[str], batch_size: int) -> float:
    embedder.encode(texts[:16], batch_size=batch_size)  # warm
    t0 = time.perf_counter()
    embedder.encode(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - t0)


def variants(root: Path) -> dict[str, Any]:
    """ONNX embedders on variants of the exported model, each in its own model root."""
    from knowledge_service.domain.vectors import onnx_export
    from knowledge_service.domain.vectors.onnx_embedder import OnnxEmbedder

    base = onnx_export.model_dir(root, MODEL)
    work = Path(tempfile.mkdtemp(prefix="fm-bench-onnx-"))
    out: dict[str, Any] = {}

    def variant(label: str, make: Any, optimization: str = "all") -> None:
        vroot = work / label
        vdir = onnx_export.model_dir(vroot, MODEL)
        vdir.mkdir(parents=True)
        for f in (onnx_export.TOKENIZER_FILE, onnx_export.MANIFEST):
            shutil.copy(base / f, vdir / f)
        try:
            make(base / onnx_export.MODEL_FILE, vdir / onnx_export.MODEL_FILE)
        except Exception as exc:
            print(f"variant {label}: {type(exc).__name__}: {exc}", flush=True)
            return
        out[label] = OnnxEmbedder(MODEL, vroot, threads=1, export=False, optimization=optimization)

    copy = shutil.copy
    for level in ("disabled", "basic", "extended"):
        variant(f"ort-{level}", copy, level)

    def fused(src: Path, dst: Path) -> None:
        from onnxruntime.transformers.optimizer import optimize_model

        model = optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=384)
        model.save_model_to_file(str(dst))

    variant("fused-offline", fused)

    def int8(src: Path, dst: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)

    variant("int8-dynamic", int8)
    out["_dir"] = work
    return out


def in_process(texts: list[str], questions: list[str], rounds: int) -> dict[str, Any]:
    from knowledge_service.config import Settings
    from knowledge_service.domain.vectors.embedder import get_embedder

    settings = Settings()
    batch = settings.embed_batch_size
    onnx = get_embedder(MODEL, threads=1, backend="onnx")
    # The torch service path: one thread, its query precision (bf16 where the CPU has it).
    torch_q = get_embedder(
        MODEL, threads=1, query_precision=settings.query_precision, backend="torch"
    )
    onnx.load()
    torch_q.load()
    res: dict[str, Any] = {"chunks": len(texts), "questions": len(questions), "batch_size": batch}

    ref_docs = torch_q.encode(texts, batch_size=batch)
    ref_q = [torch_q.encode_query(q) for q in questions]
    ref_q_fp32 = torch_q.encode(questions, batch_size=1)

    def agreement(e: Any) -> dict[str, Any]:
        docs = cosines(e.encode(texts, batch_size=batch), ref_docs)
        qs = cosines([e.encode_query(q) for q in questions], ref_q_fp32)
        return {
            "chunk_cosine_min": round(min(docs), 6),
            "chunk_cosine_mean": round(statistics.mean(docs), 6),
            "question_cosine_min": round(min(qs), 6),
            "chunks_below_0_999": sum(c < 0.999 for c in docs),
            "questions_below_0_999": sum(c < 0.999 for c in qs),
            "load": load(),
        }

    res["agreement"] = {"onnx": agreement(onnx)}
    res["agreement"]["torch_query_path"] = {
        "question_cosine_min_vs_fp32_documents": round(min(cosines(ref_q, ref_q_fp32)), 6),
        "load": load(),
    }
    print(json.dumps(res["agreement"]), flush=True)

    found = variants(settings.embedding_onnx_root)
    work = found.pop("_dir")
    try:
        for label, e in found.items():
            e.load()
            res["agreement"][label] = agreement(e)
            print(label, json.dumps(res["agreement"][label]), flush=True)

        embedders = {"onnx": onnx, "torch": torch_q, **found}
        times = query_times(embedders, questions, rounds)
        res["query_ms"] = {
            k: {"p50": pct(v, 0.5), "p90": pct(v, 0.9), "n": len(v)} for k, v in times.items()
        }
        res["query_load"] = load()
        print(json.dumps(res["query_ms"]), "load", res["query_load"], flush=True)

        res["documents_chunks_per_s"] = {}
        for _ in range(2):  # two passes, interleaved; the better of each
            for k, e in embedders.items():
                rate = doc_rate(e, texts, batch)
                best = res["documents_chunks_per_s"].get(k, {}).get("chunks_per_s", 0)
                if rate > best:
                    res["documents_chunks_per_s"][k] = {
                        "chunks_per_s": round(rate, 2),
                        "load": load(),
                    }
        print(json.dumps(res["documents_chunks_per_s"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res


def stack_round(backend: str, files: list[Path]) -> dict[str, Any]:
    """Ingestion and recall through the real processes on one backend."""
    os.environ["FM_EMBEDDING_BACKEND"] = backend  # the raw reference rate in this process too
    issuer = TokenIssuer().start()
    stack = knowledge_stack(issuer, f"fm-bench-emb-{backend}-", FM_EMBEDDING_BACKEND=backend)
    root = stack.data_dir.parent
    started = time.perf_counter()
    stack.start(timeout=300)
    try:
        admin = issuer.headers(f"admin-{uuid.uuid4()}", roles=["user", "admin"], ttl=7200)
        load_before = load()
        ingest = bench_ingestion(stack, admin, files)
        ingest["load_before_after"] = [load_before, load()]
        recall = bench_recall(stack, issuer.headers(f"reader-{uuid.uuid4()}", ttl=7200))
        return {
            "backend": backend,
            "start_seconds": round(time.perf_counter() - started, 1),
            "ingestion": ingest,
            "recall": recall,
        }
    finally:
        stack.stop()
        issuer.stop()
        shutil.rmtree(root, ignore_errors=True)


def cpu_figures(texts: list[str], questions: list[str], rounds: int) -> dict[str, Any]:
    """ONNX vs torch in CPU time (process_time: every thread of this process), which a
    loaded machine disturbs far less than wall time: ms of CPU per query, chunks per
    CPU second, the two backends interleaved."""
    from knowledge_service.config import Settings
    from knowledge_service.domain.vectors.embedder import get_embedder

    settings = Settings()
    embedders = {
        "onnx": get_embedder(MODEL, threads=1, backend="onnx"),
        "torch": get_embedder(
            MODEL, threads=1, query_precision=settings.query_precision, backend="torch"
        ),
    }
    for e in embedders.values():
        e.load()
        for q in questions[:5]:
            e.encode_query(q)
    cpu: dict[str, list[float]] = {k: [] for k in embedders}
    wall: dict[str, list[float]] = {k: [] for k in embedders}
    for r in range(rounds):
        for i, q in enumerate(questions):
            for k, e in embedders.items():
                w0, c0 = time.perf_counter(), time.process_time()
                e.encode_query(f"{q} #{r}-{i}")
                cpu[k].append((time.process_time() - c0) * 1000)
                wall[k].append((time.perf_counter() - w0) * 1000)
    out: dict[str, Any] = {"load_queries": load()}
    for k in embedders:
        out[k] = {
            "query_cpu_ms_p50": pct(cpu[k], 0.5),
            "query_cpu_ms_p90": pct(cpu[k], 0.9),
            "query_wall_ms_p50": pct(wall[k], 0.5),
        }
    # Documents as the worker embeds them (groups of 4 batches, embed_and_upsert), the
    # backends interleaved pass by pass; the median pass of each.
    batch = settings.embed_batch_size
    group = batch * 4
    per_cpu: dict[str, list[float]] = {k: [] for k in embedders}
    per_wall: dict[str, list[float]] = {k: [] for k in embedders}
    for _ in range(max(3, rounds)):
        for k, e in embedders.items():
            c0, w0 = time.process_time(), time.perf_counter()
            for start in range(0, len(texts), group):
                e.encode(texts[start : start + group], batch_size=batch)
            per_cpu[k].append(len(texts) / (time.process_time() - c0))
            per_wall[k].append(len(texts) / (time.perf_counter() - w0))
    for k in embedders:
        out[k]["documents_chunks_per_cpu_s"] = round(statistics.median(per_cpu[k]), 2)
        out[k]["documents_chunks_per_wall_s"] = round(statistics.median(per_wall[k]), 2)
    out["onnx_vs_torch"] = {
        "query_cpu_ms_p50": round(
            out["onnx"]["query_cpu_ms_p50"] / out["torch"]["query_cpu_ms_p50"], 3
        ),
        "documents_chunks_per_cpu_s": round(
            out["onnx"]["documents_chunks_per_cpu_s"] / out["torch"]["documents_chunks_per_cpu_s"],
            3,
        ),
    }
    out["load_documents"] = load()
    return out


def _carried(results: dict[str, Any], key: str) -> list[str]:
    """A note for a part kept from an earlier run (the parts can run separately)."""
    when = results.get("carried", {}).get(key)
    return [f"(From the run of {when}, before the code of this run.)", ""] if when else []


def write(results: dict[str, Any]) -> None:
    """Write the results, keeping the in-process figures or the stack rounds of the last
    run where this one has none (the two parts can run separately)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "embeddings.json"
    if previous.is_file():
        last = json.loads(previous.read_text())
        for key in ("in_process", "stack", "cpu"):
            if not results.get(key) and last.get(key):
                results[key] = last[key]
                # Kept from an earlier run: say which.
                earlier = last.get("carried", {}).get(key, last.get("measured_at"))
                results.setdefault("carried", {})[key] = earlier
    stack_file = RESULTS / "embeddings-stack.json"
    if not results.get("stack") and stack_file.is_file():
        results["stack"] = json.loads(stack_file.read_text())
    (RESULTS / "embeddings.json").write_text(json.dumps(results, indent=2) + "\n")
    ip = results.get("in_process", {})
    lines = [
        "# Embedding backends: ONNX Runtime vs sentence-transformers (torch)",
        "",
        f"{os.cpu_count()} CPUs, shared with other work (the load column is the 1-minute "
        f"load average when the figure was taken). Measured {results['measured_at']}; "
        f"model {results['model']}; {ip.get('chunks', '?')} chunks of the runbooks, "
        f"{ip.get('questions', '?')} questions.",
        "",
        "## Vectors: cosine to the sentence-transformers vector",
        "",
        *_carried(results, "in_process"),
        "| variant | chunk min | chunk mean | question min | chunks < 0.999 | "
        "questions < 0.999 | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, a in ip.get("agreement", {}).items():
        if "chunk_cosine_min" in a:
            lines.append(
                f"| {k} | {a['chunk_cosine_min']} | {a['chunk_cosine_mean']} | "
                f"{a['question_cosine_min']} | {a['chunks_below_0_999']} | "
                f"{a['questions_below_0_999']} | {a['load']} |"
            )
    tq = ip.get("agreement", {}).get("torch_query_path")
    if tq:
        lines += [
            "",
            f"(The torch service's own query path, bf16 where the CPU has it, against its fp32 "
            f"document path: min {tq['question_cosine_min_vs_fp32_documents']}.)",
        ]
    lines += [
        "",
        "## Speed, one thread",
        "",
        *_carried(results, "in_process"),
        f"Query embedding (encode_query, the service's path; the variants interleaved "
        f"query by query; load {ip.get('query_load', '?')}) and document embedding "
        f"(batches of {ip.get('batch_size', '?')}, best of two passes).",
        "",
        "| variant | query p50 ms | query p90 ms | documents chunks/s | load (documents) |",
        "|---|---|---|---|---|",
    ]
    for k, q in ip.get("query_ms", {}).items():
        d = ip.get("documents_chunks_per_s", {}).get(k, {})
        lines.append(
            f"| {k} | {q['p50']} | {q['p90']} | {d.get('chunks_per_s', '-')} | "
            f"{d.get('load', '-')} |"
        )
    cpu = results.get("cpu")
    if cpu:
        lines += [
            "",
            "## CPU time, ONNX vs torch (one thread; robust to the machine's load)",
            "",
            *_carried(results, "cpu"),
            f"process_time per call, the backends interleaved; load {cpu['load_queries']} "
            f"(queries) / {cpu['load_documents']} (documents). Documents: the chunks in "
            f"groups of 32 as the worker embeds them, median of the interleaved passes.",
            "",
            "| backend | query CPU ms p50 | p90 | query wall ms p50 | documents chunks per "
            "CPU s | per wall s |",
            "|---|---|---|---|---|---|",
        ]
        for k in ("onnx", "torch"):
            c = cpu[k]
            lines.append(
                f"| {k} | {c['query_cpu_ms_p50']} | {c['query_cpu_ms_p90']} | "
                f"{c['query_wall_ms_p50']} | {c['documents_chunks_per_cpu_s']} | "
                f"{c['documents_chunks_per_wall_s']} |"
            )
        ratio = cpu.get("onnx_vs_torch")
        if ratio:
            lines.append(
                f"| onnx / torch | {ratio['query_cpu_ms_p50']} (CPU per query) | | | "
                f"{ratio['documents_chunks_per_cpu_s']} (chunks per CPU s) | |"
            )
    if results.get("stack"):
        lines += [
            "",
            "## The real stack per backend (knowledge + worker with 2 children)",
            "",
            *_carried(results, "stack"),
            "| backend | chunks | ingest chunks/s | raw encode chunks/s | ratio | "
            "recall@5 semantic | recall@5 hybrid | load before/after |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results["stack"]:
            i, rec = r["ingestion"], r["recall"]
            lines.append(
                f"| {r['backend']} | {i['chunks']} | {i['ingest_chunks_per_s']} | "
                f"{i['raw_encode_chunks_per_s']} | {i['ratio']:.0%} | "
                f"{rec['semantic']['recall_at_5']:.0%} | {rec['hybrid']['recall_at_5']:.0%} | "
                f"{i['load_before_after'][0]} / {i['load_before_after'][1]} |"
            )
    lines.append("")
    (RESULTS / "embeddings.md").write_text("\n".join(lines))


def main() -> None:
    # The ONNX export that make run and the tests use (scripts/bootstrap.sh makes it).
    from fm_common.devstack import ROOT

    os.environ.setdefault("FM_EMBEDDING_ONNX_DIR", str(ROOT / ".cache" / "models"))
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="query rounds over the questions")
    parser.add_argument("--no-stack", action="store_true", help="in-process figures only")
    parser.add_argument(
        "--cpu-only", action="store_true", help="only the CPU-time comparison of the backends"
    )
    parser.add_argument(
        "--stack-only",
        action="store_true",
        help="the real-stack rounds only; keeps the in-process figures of the last run",
    )
    args = parser.parse_args()
    if not RUNBOOKS.is_dir():
        raise SystemExit(f"the runbook corpus is not at {RUNBOOKS}")
    files, texts, questions = corpus()
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "load_at_start": load(),
    }
    if args.cpu_only:
        results["cpu"] = cpu_figures(texts, questions, args.rounds)
        print(json.dumps(results["cpu"]), flush=True)
        write(results)
        print((RESULTS / "embeddings.md").read_text())
        return
    if not args.stack_only:
        results["in_process"] = in_process(texts, questions, args.rounds)
        results["cpu"] = cpu_figures(texts, questions, args.rounds)
    write(results)
    if not args.no_stack:
        results["stack"] = []
        results.get("carried", {}).pop("stack", None)  # measured by this run, not kept
        for backend in ("onnx", "torch"):
            results["stack"].append(stack_round(backend, files))
            print(json.dumps(results["stack"][-1]), flush=True)
            (RESULTS / "embeddings-stack.json").write_text(json.dumps(results["stack"], indent=2))
            write(results)
    print((RESULTS / "embeddings.md").read_text())


if __name__ == "__main__":
    main()
