"""One noisy user against a quiet one, on the real stack (issue 16 item 5).

The attack run: three 1 MB pasted turns by one user slowed another user's small turn
from 0.07 s to 15.8 s, and their indexing held both worker children for 7 minutes while
34 other ingestion tasks waited. This starts the system the way `make run` does (the
fake provider in its own process, the real worker with 2 children and the real embedding
model) and measures, for the quiet user B:
  - small turns (a one-line query): latency alone, then while A sends three concurrent
    1 MB pasted turns (the per-user turn cap answers the third 429);
  - the indexing of one small evidence file: wait alone, then queued behind A's pasted
    evidence and a backlog of A's uploads, and how many of A's queued files the worker
    took before B's (fair ordering by rank, ADR 0136: 0 or 1 expected, all of them
    under plain FIFO); A's large files are indexed in slices (ADR 0160), so B's file
    takes the next free child instead of waiting for A's files to end;
  - then that all of A's work still ends (how many files completed, and when);
  - runbook uploads (`--scenario runbooks`, ADR 0166): A uploads large runbooks that hold
    both children, then B one small runbook; B's time to processed, and A's.
Writes bench/results/fairness.json and fairness.md (`--slice-seconds 0`: run-to-completion,
as before ADR 0160, written to fairness-unsliced.{json,md}); a run of one scenario keeps
the other's last figures in the file.

    uv run --frozen --no-sync python bench/fairness.py [--paste-mb 1] [--backlog 6]
        [--slice-seconds 5] [--scenario all|evidence|runbooks] [--runbook-kb 400]
        [--runbooks 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from fm_common.devstack import Stack, every_process_but
from fm_common.testing.documents import long_runbook
from fm_common.testing.ports import free_port, wait_for_port

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PASSWORD = "correct horse battery staple"
QUERY = "The orders API returns 502 since 10:00; what should I check first?"
LOG_LINE = "2026-12-05T10:00:{s:02d}Z ERROR orders-api upstream timeout pool={n} req={r}\n"


def log_text(size: int, seed: str) -> str:
    """Log lines of `size` characters, distinct per `seed` (no dedupe)."""
    lines, total, r = [], 0, 0
    while total < size:
        line = f"{seed} " + LOG_LINE.format(s=r % 60, n=r % 40, r=r)
        lines.append(line)
        total += len(line)
        r += 1
    return "".join(lines)[:size]


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50_s": round(statistics.median(ordered), 3),
        "max_s": round(ordered[-1], 3),
        "mean_s": round(statistics.fmean(ordered), 3),
    }


async def register(client: httpx.AsyncClient) -> dict[str, str]:
    name = f"fair_{uuid.uuid4().hex[:10]}"
    resp = await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def new_case(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    resp = await client.post("/api/v1/cases", json={"title": None, "priority": "low"}, headers=auth)
    resp.raise_for_status()
    return str(resp.json()["case_id"])


async def small_turn(client: httpx.AsyncClient, auth: dict[str, str], case_id: str) -> float:
    start = time.perf_counter()
    resp = await client.post(f"/api/v1/cases/{case_id}/turns", data={"query": QUERY}, headers=auth)
    if resp.status_code != 200:
        raise RuntimeError(f"small turn failed: {resp.status_code} {resp.text[:300]}")
    return time.perf_counter() - start


async def pasted_turn(
    client: httpx.AsyncClient, auth: dict[str, str], case_id: str, text: str
) -> tuple[int, float]:
    start = time.perf_counter()
    # Multipart, as the extension sends it (a url-encoded 1 MB field grows past 1 MiB).
    form = {"query": (None, "What is wrong here?"), "pasted_content": (None, text)}
    resp = await client.post(f"/api/v1/cases/{case_id}/turns", files=form, headers=auth)
    if resp.status_code not in (200, 429):
        raise RuntimeError(f"pasted turn failed: {resp.status_code} {resp.text[:300]}")
    return resp.status_code, time.perf_counter() - start


async def upload(
    client: httpx.AsyncClient, auth: dict[str, str], case_id: str, text: str, name: str
) -> str:
    resp = await client.post(
        "/api/v1/evidence",
        data={"case_id": case_id},
        files={"file": (name, text.encode(), "text/plain")},
        headers=auth,
    )
    if resp.status_code != 201:
        raise RuntimeError(f"upload failed: {resp.status_code} {resp.text[:300]}")
    return str(resp.json()["file_id"])


async def wait_indexed(
    client: httpx.AsyncClient,
    files: list[tuple[dict[str, str], str]],
    timeout: float,
    until: str | None = None,
) -> dict[str, float]:
    """file_id -> the monotonic time its analysis was seen ended (completed or failed),
    polling every file (with its owner's token) in one loop; all of them, or until file
    `until` has ended."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(files) and time.monotonic() < deadline and until not in done:
        for auth, fid in files:
            if fid in done:
                continue
            resp = await client.get(f"/api/v1/evidence/{fid}", headers=auth)
            resp.raise_for_status()
            if resp.json()["analysis_status"] in (
                "completed",
                "failed",
            ):
                done[fid] = time.monotonic()
        await asyncio.sleep(2.0)
    return done


async def case_files(
    client: httpx.AsyncClient, auth: dict[str, str], case_id: str
) -> list[dict[str, Any]]:
    resp = await client.get(
        f"/api/v1/cases/{case_id}/uploaded-files", params={"limit": 100}, headers=auth
    )
    resp.raise_for_status()
    return list(resp.json()["files"])


async def wait_case_ended(
    client: httpx.AsyncClient, auth: dict[str, str], case_id: str, timeout: float
) -> tuple[float, list[dict[str, Any]]]:
    """Wait until every file of the case has ended (completed or failed); when, and them."""
    deadline = time.monotonic() + timeout
    while True:
        files = await case_files(client, auth, case_id)
        if all(f["analysis_status"] in ("completed", "failed") for f in files):
            return time.monotonic(), files
        if time.monotonic() > deadline:
            return float("nan"), files
        await asyncio.sleep(2.0)


async def quiet_turns(
    client: httpx.AsyncClient, auth: dict[str, str], case_id: str, stop: asyncio.Event, least: int
) -> list[float]:
    out: list[float] = []
    while not stop.is_set() or len(out) < least:
        out.append(await small_turn(client, auth, case_id))
    return out


async def measure(stack: Stack, paste_mb: float, backlog: int, turns: int) -> dict[str, Any]:
    timeout = httpx.Timeout(600.0, connect=10.0)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=timeout) as client:
        a, b = await register(client), await register(client)
        case_a, case_b = await new_case(client, a), await new_case(client, b)
        await small_turn(client, b, case_b)  # warm-up (imports, connections)

        # 1. B alone.
        alone = [await small_turn(client, b, case_b) for _ in range(turns)]
        t0 = time.monotonic()
        fid = await upload(client, b, case_b, log_text(2_000, "quiet-alone"), "quiet-alone.log")
        index_alone = (await wait_indexed(client, [(b, fid)], 600))[fid] - t0

        # 2. A's three concurrent 1 MB pasted turns, B's small turns meanwhile.
        size = int(paste_mb * 1_000_000)
        stop = asyncio.Event()
        quiet = asyncio.create_task(quiet_turns(client, b, case_b, stop, turns))
        noisy = await asyncio.gather(
            *(
                pasted_turn(client, a, case_a, log_text(size, f"noisy-{i}-{uuid.uuid4().hex}"))
                for i in range(3)
            )
        )
        stop.set()
        during = await quiet

        # 3. A's backlog of uploads behind its pasted evidence, then B's one small file.
        mine = [
            await upload(client, a, case_a, log_text(200_000, f"backlog-{i}"), f"b{i}.log")
            for i in range(backlog)
        ]
        t1 = time.monotonic()
        theirs = await upload(client, b, case_b, log_text(2_000, "quiet-busy"), "quiet-busy.log")
        files = [(b, theirs)] + [(a, f) for f in mine]
        ended = await wait_indexed(client, files, 2400, until=theirs)
        index_busy = ended[theirs] - t1 if theirs in ended else None
        cut = ended.get(theirs, float("inf"))
        before = sum(1 for f in mine if ended.get(f, float("inf")) < cut)
        # 4. A's work is not starved or lost: every file of A's case ends, completed.
        a_ended, a_files = await wait_case_ended(client, a, case_a, 3600)
        a_statuses = [f["analysis_status"] for f in a_files]
    return {
        "small_turn_alone": stats(alone),
        "small_turn_during_noise": stats(during),
        "noisy_turns": [{"status": s, "seconds": round(t, 2)} for s, t in noisy],
        "index_small_file_alone_s": round(index_alone, 2),
        "index_small_file_behind_backlog_s": None if index_busy is None else round(index_busy, 2),
        "backlog_files": backlog,
        "backlog_files_indexed_before_it": before,
        "noisy_files": len(a_files),
        "noisy_files_completed": a_statuses.count("completed"),
        "noisy_files_failed": a_statuses.count("failed"),
        "noisy_all_ended_s": round(a_ended - t1, 2),
    }


def runbook_text(size: int, seed: str) -> str:
    """A markdown runbook of `size` characters, distinct per `seed` (each step is over
    150 characters)."""
    return long_runbook(seed, size // 150 + 1).decode()[:size]


async def upload_runbook(
    client: httpx.AsyncClient, auth: dict[str, str], text: str, name: str
) -> tuple[str, str]:
    resp = await client.post(
        "/api/v1/knowledge/documents",
        data={"title": name, "document_type": "runbook", "scope": "personal"},
        files={"file": (f"{name}.md", text.encode(), "text/markdown")},
        headers=auth,
    )
    if resp.status_code != 202:
        raise RuntimeError(f"runbook upload failed: {resp.status_code} {resp.text[:300]}")
    return str(resp.json()["document_id"]), resp.headers["location"]


async def wait_processed(
    client: httpx.AsyncClient, docs: list[tuple[dict[str, str], str]], timeout: float
) -> dict[str, tuple[float, str]]:
    """document id -> (the monotonic time it was seen out of `processing`, its status)."""
    done: dict[str, tuple[float, str]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(docs) and time.monotonic() < deadline:
        for auth, doc_id in docs:
            if doc_id in done:
                continue
            resp = await client.get(f"/api/v1/knowledge/documents/{doc_id}", headers=auth)
            resp.raise_for_status()
            status = resp.json()["status"]
            if status != "processing":
                done[doc_id] = (time.monotonic(), status)
        await asyncio.sleep(0.5)
    return done


async def measure_runbooks(stack: Stack, size_kb: int, count: int) -> dict[str, Any]:
    """A's `count` large runbooks in progress on the children, then B's small one."""
    timeout = httpx.Timeout(600.0, connect=10.0)
    small = "# Disk full on the build host\n\nDelete old logs in /var/log, then rerun.\n"
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=timeout) as client:
        a, b = await register(client), await register(client)
        t0 = time.monotonic()
        alone_id, _ = await upload_runbook(client, b, small, "alone")
        alone = (await wait_processed(client, [(b, alone_id)], 600))[alone_id][0] - t0
        t1 = time.monotonic()
        large = [
            await upload_runbook(
                client, a, runbook_text(size_kb * 1000, f"noisy{i}{uuid.uuid4().hex[:6]}"), f"l{i}"
            )
            for i in range(count)
        ]
        # Both children on A's runbooks: every one of them has chunks in (progress > 0).
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            jobs = [(await client.get(path, headers=a)).json() for _, path in large]
            if all(j["status"] == "running" and j["progress"] > 0 for j in jobs):
                break
            await asyncio.sleep(0.5)
        t2 = time.monotonic()
        quiet_id, _ = await upload_runbook(client, b, small, "quiet")
        docs = [(b, quiet_id)] + [(a, doc_id) for doc_id, _ in large]
        ended = await wait_processed(client, docs, 7200)
        counts = []
        for doc_id, _ in large:
            resp = await client.get(f"/api/v1/knowledge/documents/{doc_id}", headers=a)
            counts.append(resp.json()["chunk_count"])
    quiet_at, quiet_status = ended.get(quiet_id, (float("nan"), "timeout"))
    large_at = [ended.get(d, (float("nan"), "timeout")) for d, _ in large]
    return {
        "runbook_kb": size_kb,
        "runbooks": count,
        "chunks_each": counts,
        "small_alone_s": round(alone, 2),
        "small_behind_large_s": round(quiet_at - t2, 2),
        "small_status": quiet_status,
        "large_started_after_s": round(t2 - t1, 2),
        "large_processed_after_upload_s": [round(at - t1, 2) for at, _ in large_at],
        "large_statuses": [status for _, status in large_at],
        "large_still_processing_when_small_done": sum(at > quiet_at for at, _ in large_at),
    }


def runbook_lines(rb: dict[str, Any]) -> list[str]:
    return [
        "## Runbook uploads (ADR 0166)",
        "",
        f"A uploads {rb['runbooks']} markdown runbooks of {rb['runbook_kb']} KB "
        f"({', '.join(str(c) for c in rb['chunks_each'])} chunks), one on each child; once "
        "every one has chunks in, B uploads one small runbook.",
        "",
        "| | |",
        "|---|---|",
        f"| B's small runbook alone: upload to processed | {rb['small_alone_s']} s |",
        f"| B's small runbook behind A's in progress: upload to processed | "
        f"{rb['small_behind_large_s']} s ({rb['small_status']}) |",
        f"| A's runbooks still processing when B's was processed | "
        f"{rb['large_still_processing_when_small_done']} of {rb['runbooks']} |",
        f"| A's runbooks: both children busy after | {rb['large_started_after_s']} s |",
        f"| A's runbooks: upload to processed | "
        f"{', '.join(f'{t} s' for t in rb['large_processed_after_upload_s'])} "
        f"({', '.join(rb['large_statuses'])}) |",
        "",
    ]


def evidence_lines(result: dict[str, Any], r: dict[str, Any]) -> list[str]:
    noise = r["small_turn_during_noise"]
    return [
        "## Evidence files and turns",
        "",
        f"Pasted turns of {result['paste_mb']} MB; backlog of {r['backlog_files']} files "
        "of 200 KB.",
        "",
        "| | quiet user B |",
        "|---|---|",
        f"| small turn alone (p50 / max) | {r['small_turn_alone']['p50_s']} s / "
        f"{r['small_turn_alone']['max_s']} s |",
        f"| small turn while A sends 3 pasted turns (p50 / max, n={noise['n']}) "
        f"| {noise['p50_s']} s / {noise['max_s']} s |",
        "| A's pasted turns (status, seconds) | "
        + ", ".join(f"{t['status']} in {t['seconds']} s" for t in r["noisy_turns"])
        + " |",
        f"| index of one small file alone | {r['index_small_file_alone_s']} s |",
        f"| same, queued behind A's pasted evidence and backlog | "
        f"{r['index_small_file_behind_backlog_s']} s |",
        f"| A's queued backlog files indexed before it | "
        f"{r['backlog_files_indexed_before_it']} of {r['backlog_files']} |",
        f"| A's files (pasted evidence + backlog): all ended after | {r['noisy_all_ended_s']} s "
        f"({r['noisy_files_completed']} of {r['noisy_files']} completed, "
        f"{r['noisy_files_failed']} failed) |",
        "",
        "Attack run before the caps and the fair ordering: small turn 0.07 s alone, 15.8 s "
        "during three 1 MB pasted turns; the pasted evidence held both worker children for "
        "7 minutes while 34 other ingestion tasks waited (FIFO). With the fair ordering and "
        "tasks run to completion (before ADR 0160; load 0.59): the small file queued behind "
        "A's work waited 379.77 s, both children held by the two 1 MB pastes (381 s each).",
        "",
    ]


def write(result: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    name = "fairness" if result["slice_seconds"] else "fairness-unsliced"
    path = RESULTS / f"{name}.json"
    if path.exists():  # a run of one scenario keeps the other's last figures
        previous = json.loads(path.read_text())
        for key in ("results", "runbooks"):
            if key not in result and key in previous:
                result[key] = previous[key]
                if key == "results" and previous.get("note"):
                    result["note"] = previous["note"]
                result.setdefault("kept_from_earlier_run", []).append(
                    {"part": key, "load_before": previous.get("load_before")}
                )
    path.write_text(json.dumps(result, indent=2) + "\n")
    r = result.get("results")
    slicing = (
        f"A running task gives its child back every {result['slice_seconds']} s "
        "(`FM_WORKER_SLICE_SECONDS`, ADR 0160)."
        if result["slice_seconds"]
        else "Slicing off (`FM_WORKER_SLICE_SECONDS=0`): a task runs to completion."
    )
    md = [
        "# Fairness: one noisy user against a quiet one (issue 16 item 5)",
        "",
        f"{result['machine']}; load average {result['load_before']} before the run, "
        f"{result['load_after_1m_5m'][0]} / {result['load_after_1m_5m'][1]} (1 / 5 min) after "
        "(shared machine: other work inflates every number). Real stack (`make run`'s "
        f"processes), worker with 2 children, zero-latency fake provider. {slicing}",
        "",
    ]
    for kept in result.get("kept_from_earlier_run", []):
        md += [
            f"The {'evidence' if kept['part'] == 'results' else 'runbook'} figures are from "
            f"an earlier run (load average {kept['load_before']} before it).",
            "",
        ]
    if r:
        md += evidence_lines(result, r)
    if result.get("runbooks"):
        md += runbook_lines(result["runbooks"])
    if result.get("note"):
        md += [result["note"], ""]
    (RESULTS / f"{name}.md").write_text("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paste-mb", type=float, default=1.0)
    parser.add_argument("--backlog", type=int, default=6)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--slice-seconds", type=float, default=5.0)
    parser.add_argument("--scenario", choices=["all", "evidence", "runbooks"], default="all")
    parser.add_argument("--runbook-kb", type=int, default=400)
    parser.add_argument("--runbooks", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "fm_common.testing.fake_llm", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    providers = [
        {
            "name": "fake",
            "kind": "openai_compatible",
            "model": "fake-model",
            "api_key": "bench-key",
            "base_url": f"http://127.0.0.1:{port}/v1",
        }
    ]
    root = Path(tempfile.mkdtemp(prefix="fm-bench-fairness-"))
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only=every_process_but("beat"),
        log_dir=root / "logs",
        extra_env={
            "FM_AGENT_PROVIDERS": json.dumps(providers),
            "FM_AUTH_BCRYPT_ROUNDS": "4",
            # The run outlasts a 15-minute access token on a loaded machine.
            "FM_AUTH_ACCESS_TOKEN_TTL_SECONDS": "86400",
            # The poller asks every 2 s for minutes: keep the per-user limit out of the way.
            "FM_GATEWAY_RATE_LIMIT_PER_WINDOW": "100000",
            "FM_WORKER_CONCURRENCY": "2",
            "FM_WORKER_SLICE_SECONDS": str(args.slice_seconds),
            "FM_LOG_LEVEL": "INFO",
            "FM_LOG_FORMAT": "json",
            "HF_HUB_OFFLINE": "1",
        },
    )
    load_before = round(os.getloadavg()[0], 2)
    try:
        stack.start(timeout=300)
        parts: dict[str, Any] = {}
        if args.scenario in ("all", "runbooks"):
            parts["runbooks"] = asyncio.run(measure_runbooks(stack, args.runbook_kb, args.runbooks))
        if args.scenario in ("all", "evidence"):
            parts["results"] = asyncio.run(measure(stack, args.paste_mb, args.backlog, args.turns))
    finally:
        stack.stop()
        fake.terminate()
        fake.wait(timeout=10)
    load_after = [round(x, 2) for x in os.getloadavg()[:2]]
    result = {
        "name": "fairness",
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_before": load_before,
        "load_after_1m_5m": load_after,
        "paste_mb": args.paste_mb,
        "slice_seconds": args.slice_seconds,
        **parts,
    }
    write(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
