"""Search latency at 100,000 chunks, one client, on a kept data directory (issue 18).

bench/retrieval.py measures latency once, after ingesting both runbook corpora and its
quality runs (~10 minutes before the first latency request). This bench makes that
collection once and keeps it, so the latency can be measured again and again, by
different builds of the service, on the very same data:

  * `--prepare`: a fresh stack in `--data`, both corpora of ../shared/data/runbooks
    uploaded into one user's knowledge base through the worker, the collection filled
    to `--total-chunks` with noisy copies of its vectors (bench/retrieval.py's `fill`),
    the BM25 index built; the user id is kept in `<data>/state.json`;
  * then (and on every later run) `--rounds` rounds on a stack restarted on `--data`:
    each round searches `--requests` distinct questions one after the other (one
    client), in hybrid mode the way bench/retrieval.py does (`limit` 10, the user's and
    the global collection) and the way the agent does (`agent_service...context._search`:
    its `retrieval_limit` and mode, scopes personal, global and case with a case id),
    and semantic at `limit` 10 for comparison. Client-side round trip and the service's
    `took_ms`, p50 / p99, with the load average before and after each row; the
    service's phase timings (`knowledge.searched` log lines) p50 / p99 per phase.

Each run appends its rows to bench/results/search_latency.json (`--label` names the
build, e.g. `before` / `after`), and bench/results/search_latency.md is written from
every row kept there. `--compare <checkout> --compare-data <copy of --data>` measures
another build side by side: a second stack runs that checkout's code (its `*/src` first
on PYTHONPATH; both stacks then start their processes on their own, not from the fork
server) on the copy, and each question goes to both stacks in turn, alternating which
goes first, so both see the same load (a p99 moves by 30 ms between two rounds a
minute apart on this shared machine). The checkout needs `.cache` (a link to this
one's: Chroma's environment and the model export).

    nice -n 10 uv run --frozen --no-sync python bench/search_latency.py \
        --data /tmp/fm-search-latency [--prepare] [--rounds 2] [--label after]
    git archive <before> | tar -x -C /tmp/before && ln -s $PWD/.cache /tmp/before/.cache
    cp -a /tmp/fm-search-latency /tmp/fm-search-latency-b
    nice -n 10 uv run --frozen --no-sync python bench/search_latency.py \
        --data /tmp/fm-search-latency --compare /tmp/before \
        --compare-data /tmp/fm-search-latency-b --label after
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fm_common.devstack import ROOT, Stack
from fm_common.testing.tokens import TokenIssuer

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PHASES = ("collections", "embed", "chroma", "bm25", "content", "fuse")


@functools.cache
def _retrieval() -> Any:
    """bench/retrieval.py (its corpora, questions, upload and fill helpers, and through
    it bench/knowledge.py's)."""
    sys.path.insert(0, str(BENCH))
    return importlib.import_module("retrieval")


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def stack_on(data: Path, issuer: TokenIssuer, code: Path | None = None) -> Stack:
    """Redis, Chroma, the knowledge service and a worker on `data` (kept between runs);
    with `code`, the services run that checkout's code (its `*/src` first on PYTHONPATH,
    each process started on its own rather than forked from the shared fork server)."""
    env = {
        "FM_JWKS_URL": issuer.jwks_url,
        "FM_WORKER_CONCURRENCY": "2",
        "FM_LOG_FORMAT": "json",
        # INFO: the service's `knowledge.searched` lines carry the phase timings.
        "FM_LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "FM_KNOWLEDGE_VERIFY_CASE_OWNERSHIP": "false",
    }
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in sorted(code.glob("fm-*/src")))
        env["FM_DEVSTACK_PREFORK"] = "0"
    return Stack(
        data_dir=data / "data",
        ports=Stack.free_ports(),
        only={"redis", "chroma", "knowledge", "worker"},
        log_dir=data / "logs",
        extra_env=env,
    )


def prepare(data: Path, total: int) -> dict[str, Any]:
    retrieval = _retrieval()
    issuer = TokenIssuer().start()
    stack = stack_on(data, issuer)
    stack.start(timeout=300)
    try:
        user_id = f"latency-{uuid.uuid4()}"
        token = issuer.token(user_id, ttl=7200)
        files = retrieval.corpus_files()
        print(f"ingesting {len(files)} runbooks (load {load()}) ...", flush=True)
        started = time.perf_counter()
        retrieval.ingest(stack, {"Authorization": f"Bearer {token}"}, files)
        ingest_s = round(time.perf_counter() - started, 1)
        print(f"filling to {total} chunks ...", flush=True)
        state = {
            "user_id": user_id,
            "runbooks": len(files),
            "ingest_seconds": ingest_s,
            **retrieval.fill(stack, user_id, token, total),
        }
        (data / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        print(json.dumps(state), flush=True)
        return state
    finally:
        stack.stop()
        issuer.stop()


def pct(values: list[float], p: float) -> float:
    return float(_retrieval().knowledge_bench().pct(values, p))


def _queries(n: int, seed: int) -> list[str]:
    import random

    questions = [q["question"] for q in _retrieval().load_questions()]
    rnd = random.Random(seed)
    extra = ("in production", "since the upgrade", "after a reboot", "intermittently", "")
    return [f"{rnd.choice(questions)} {rnd.choice(extra)} #{i}".strip() for i in range(n)]


def _log_offset(stack: Stack) -> int:
    path = stack.log_dir / "knowledge.log" if stack.log_dir else None
    return path.stat().st_size if path and path.exists() else 0


def _phases(stack: Stack, offset: int) -> dict[str, list[float]]:
    """The `knowledge.searched` lines the service logged since `offset`: ms per phase."""
    assert stack.log_dir is not None
    out: dict[str, list[float]] = {}
    with open(stack.log_dir / "knowledge.log", "rb") as fh:
        fh.seek(offset)
        for raw in fh:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") != "knowledge.searched":
                continue
            for name, value in (line.get("phases_ms") or {}).items():
                out.setdefault(name, []).append(float(value))
    return out


def _gc(client: httpx.Client) -> dict[str, float]:
    """The service's garbage-collector pauses so far (`fm_gc_pause_seconds`): count and
    total seconds per generation."""
    out: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("fm_gc_pause_seconds_") and not line.startswith("fm_gc_pause_seconds_b"):
            name, value = line.rsplit(" ", 1)
            kind = name.split("{")[0].rsplit("_", 1)[1]  # count / sum
            gen = name.split('generation="')[1].split('"')[0]
            out[f"gen{gen}_{kind}"] = float(value)
    return out


class Target:
    """One stack under measurement: its client, its samples, its log."""

    def __init__(self, label: str, stack: Stack, headers: dict[str, str]) -> None:
        self.label, self.stack, self.headers = label, stack, headers
        self.client = httpx.Client(base_url=stack.url("knowledge"), timeout=60)

    def search(self, body: dict[str, Any], query: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        resp = self.client.post(
            "/api/v1/knowledge/search", headers=self.headers, json={**body, "query": query}
        )
        dt = (time.perf_counter() - t0) * 1000
        resp.raise_for_status()
        return dt, float(resp.json()["took_ms"])


def run_row(targets: list[Target], name: str, body: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """`n` distinct questions, one client; with several targets each question goes to
    every one of them in turn (the first target alternating), so they share the load."""
    for t in targets:  # warm-up: the connection, the BM25 index in memory, first calls
        for q in _queries(20, 999):
            t.search(body, q)
    before = load()
    offsets = [_log_offset(t.stack) for t in targets]
    gc_before = [_gc(t.client) for t in targets]
    client_ms: list[list[float]] = [[] for _ in targets]
    server_ms: list[list[float]] = [[] for _ in targets]
    for i, q in enumerate(_queries(n, len(name))):
        order = list(range(len(targets)))
        if i % 2:
            order.reverse()
        for j in order:
            dt, took = targets[j].search(body, q)
            client_ms[j].append(dt)
            server_ms[j].append(took)
    gc_after = [_gc(t.client) for t in targets]
    after = load()
    time.sleep(0.3)  # the log line of the last request
    rows = []
    for j, t in enumerate(targets):
        phases = _phases(t.stack, offsets[j])
        gb, ga = gc_before[j], gc_after[j]
        rows.append(
            {
                "row": name,
                "label": t.label,
                "interleaved": len(targets) > 1,
                "mode": body["mode"],
                "limit": body["limit"],
                "requests": len(client_ms[j]),
                "p50_ms": pct(client_ms[j], 0.5),
                "p99_ms": pct(client_ms[j], 0.99),
                "max_ms": round(max(client_ms[j]), 2),
                "mean_ms": round(statistics.mean(client_ms[j]), 2),
                "server_p50_ms": pct(server_ms[j], 0.5),
                "server_p99_ms": pct(server_ms[j], 0.99),
                "phases_p50_p99_ms": {
                    k: [pct(v, 0.5), pct(v, 0.99)] for k, v in phases.items() if len(v) >= n // 2
                },
                "gc": {
                    f"gen{g}": [
                        int(ga.get(f"gen{g}_count", 0) - gb.get(f"gen{g}_count", 0)),
                        round((ga.get(f"gen{g}_sum", 0) - gb.get(f"gen{g}_sum", 0)) * 1000, 1),
                    ]
                    for g in range(3)
                },
                "load_before": before,
                "load_after": after,
            }
        )
    return rows


def measure(
    data: Path,
    rounds: int,
    requests: int,
    label: str,
    rows: list[str],
    compare: tuple[Path, Path, str] | None = None,
) -> list[Any]:
    from agent_service.config import Settings as AgentSettings

    state = json.loads((data / "state.json").read_text())
    agent = AgentSettings()
    bodies = {
        "hybrid": {"mode": "hybrid", "limit": 10},
        "agent": {
            "mode": agent.retrieval_mode,
            "limit": agent.retrieval_limit,
            "scopes": ["personal", "global", "case"],
            "case_id": f"bench-case-{uuid.uuid4()}",
        },
        "semantic": {"mode": "semantic", "limit": 10},
    }
    issuer = TokenIssuer().start()
    # Compared, both run from their own checkout the same way (not forked).
    stacks = [(label, stack_on(data, issuer, ROOT if compare is not None else None))]
    if compare is not None:
        code, other_data, other_label = compare
        stacks.insert(0, (other_label, stack_on(other_data, issuer, code)))
    targets: list[Target] = []
    out = []
    try:
        for lab, stack in stacks:
            stack.start(timeout=300)
            targets.append(Target(lab, stack, issuer.headers(state["user_id"], ttl=3600)))
        for r in range(1, rounds + 1):
            for name in rows:
                for row in run_row(targets, name, bodies[name], requests):
                    row.update(
                        round=r,
                        chunks=state["chunks"],
                        measured_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    )
                    print(json.dumps(row), flush=True)
                    out.append(row)
    finally:
        for t in targets:
            t.client.close()
        for _, stack in stacks:
            stack.stop()
        issuer.stop()
    return out


def write(new: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "search_latency.json"
    rows = (json.loads(path.read_text()) if path.exists() else []) + new
    path.write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Search latency at 100,000 chunks, one client",
        "",
        "bench/search_latency.py: one user's knowledge base holding both runbook corpora, "
        "filled to the chunk count below with noisy copies of its vectors; each row is "
        "one client searching distinct questions one after the other, after 20 warm-up "
        "searches. `hybrid`: limit 10, the user's and the global collection (as "
        "bench/retrieval.py); `agent`: the agent's own request (its limit and mode, "
        "scopes personal, global and case with a case id). Client: HTTP round trip; "
        "server: the service's `took_ms`; phases: the service's own timings. Load: "
        "1/5/15-minute load averages of the 2-CPU machine, which other engineers share.",
        "",
        "| measured | build | round | row | chunks | requests | p50 ms | p99 ms | "
        "server p50 / p99 ms | load before | load after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['measured_at']} | {row['label']} | {row['round']} | {row['row']} "
            f"(limit {row['limit']}) | {row['chunks']} | {row['requests']} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {row['server_p50_ms']} / {row['server_p99_ms']} | "
            f"{row['load_before']} | {row['load_after']} |"
        )
    phased = [r for r in rows if r.get("phases_p50_p99_ms")]
    if phased:
        lines += [
            "",
            "## Where the service's time goes (p50 / p99 ms per phase)",
            "",
            "`collections`: the collections to search (and the case owner, for a case "
            "search); `embed`: the query embedding; `chroma`: the vector queries; `bm25`: "
            "the BM25 side (version, index, scoring), concurrent with the two before; "
            "`content`: texts of the semantic hits; `fuse`: fusion and the results.",
            "",
            "| measured | build | round | row | " + " | ".join(PHASES) + " |",
            "|---|---|---|---|" + "---|" * len(PHASES),
        ]
        for row in phased:
            ph = row["phases_p50_p99_ms"]
            cells = [f"{ph[p][0]} / {ph[p][1]}" if p in ph else "-" for p in PHASES]
            lines.append(
                f"| {row['measured_at']} | {row['label']} | {row['round']} | {row['row']} | "
                + " | ".join(cells)
                + " |"
            )
    (RESULTS / "search_latency.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--total-chunks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--label", default="current")
    parser.add_argument("--rows", default="hybrid,agent", help="of hybrid, agent, semantic")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--compare",
        type=Path,
        help="another checkout: its services search a copy of the data (--compare-data), "
        "each question sent to both stacks in turn",
    )
    parser.add_argument("--compare-data", type=Path)
    parser.add_argument("--compare-label", default="before")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    if args.prepare or not (args.data / "state.json").exists():
        prepare(args.data, args.total_chunks)
    compare = None
    if args.compare is not None:
        if args.compare_data is None:
            raise SystemExit("--compare needs --compare-data (a copy of --data)")
        compare = (args.compare, args.compare_data, args.compare_label)
    rows = measure(args.data, args.rounds, args.requests, args.label, args.rows.split(","), compare)
    if not args.no_write:
        write(rows)


if __name__ == "__main__":
    main()
