"""The platform's own cost of an agent turn, through the gateway, with the real processes.

Starts the system the way `make run` does (fm_common.devstack on free ports) with the
agent's provider chain pointed at a zero-latency fake provider (fm_common.testing.
fake_llm, speaking the OpenAI wire protocol), uploads a runbook (processed by the real
worker and embedding model), then, side by side in one run:
  - the bare provider call: the same prompt the agent sends, POSTed straight to the fake
    provider (what a turn would cost if the platform cost nothing);
  - a turn through the gateway (auth, case + history, retrieval over three collections,
    redaction, the provider call, the case write-back): p50/p99 at 1 and 8 concurrent
    users (one case each); the platform overhead is turn minus bare;
  - time to the first SSE token through the gateway against the bare provider's first
    streamed chunk.
Targets (issue 5): p50 overhead under 50 ms at 1 user; first-token overhead under 30 ms.
Writes bench/results/agent.json and agent.md.

    uv run --frozen --no-sync python bench/agent.py [--turns 40] [--users 8]
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
from fm_common.testing.ports import free_port, wait_for_port

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PASSWORD = "correct horse battery staple"
RUNBOOK = (
    "# Orders DB connection pool exhausted\n\nSymptom: the orders service logs 'remaining "
    "connection slots are reserved' and checkout returns 502.\n\nFix: lower the pool size "
    "to 20 per pod, raise max_connections to 300, restart pgbouncer.\n"
)
QUERY = "Checkout returns 502 and orders logs remaining connection slots are reserved; why?"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": pct(values, 50),
        "p99_ms": pct(values, 99),
        "mean_ms": round(statistics.fmean(values), 2),
    }


async def register(client: httpx.AsyncClient) -> dict[str, str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    resp = await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def upload_runbook(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    resp = await client.post(
        "/api/v1/knowledge/documents",
        files={"file": ("pool.md", RUNBOOK.encode(), "text/markdown")},
        data={"title": "Orders pool runbook", "document_type": "runbook", "scope": "personal"},
        headers=auth,
    )
    resp.raise_for_status()
    doc_id = resp.json()["document_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        doc = (await client.get(f"/api/v1/knowledge/documents/{doc_id}", headers=auth)).json()
        if doc["status"] != "processing":
            if doc["status"] != "processed":
                raise RuntimeError(f"runbook not processed: {doc}")
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("runbook not processed in time")


async def new_case(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    resp = await client.post("/api/v1/cases", json={"title": None, "priority": "low"}, headers=auth)
    resp.raise_for_status()
    return str(resp.json()["case_id"])


async def turn(client: httpx.AsyncClient, auth: dict[str, str], case_id: str) -> float:
    start = time.perf_counter()
    resp = await client.post(f"/api/v1/cases/{case_id}/turns", data={"query": QUERY}, headers=auth)
    elapsed = (time.perf_counter() - start) * 1000
    if resp.status_code != 200 or not resp.json()["citations"]:
        raise RuntimeError(f"turn failed: {resp.status_code} {resp.text[:300]}")
    return elapsed


async def first_token(client: httpx.AsyncClient, auth: dict[str, str], case_id: str) -> float:
    start = time.perf_counter()
    headers = auth | {"Accept": "text/event-stream"}
    async with client.stream(
        "POST", f"/api/v1/cases/{case_id}/turns", data={"query": QUERY}, headers=headers
    ) as resp:
        first = None
        async for chunk in resp.aiter_text():
            if first is None and "event: token" in chunk:
                first = (time.perf_counter() - start) * 1000
        if resp.status_code != 200 or first is None:
            raise RuntimeError(f"SSE turn failed: {resp.status_code}")
    return first


async def bare_call(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    resp = await client.post(url, json=body, headers={"Authorization": "Bearer bench"})
    resp.raise_for_status()
    return (time.perf_counter() - start) * 1000


async def bare_first_chunk(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    elapsed = None
    async with client.stream("POST", url, json=body | {"stream": True}) as resp:
        async for line in resp.aiter_lines():
            if elapsed is None and '"content": "' in line and '"content": ""' not in line:
                elapsed = (time.perf_counter() - start) * 1000
    if elapsed is None:
        raise RuntimeError("no streamed chunk")
    return elapsed


async def last_prompt(fake_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        recorded = (await client.get(f"{fake_url}/_fake/requests")).json()
    return dict(recorded[-1]["body"])


async def measure(stack: Stack, fake_url: str, turns: int, users: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60, limits=limits) as gw:
        auth = await register(gw)
        await upload_runbook(gw, auth)
        cases = [await new_case(gw, auth) for _ in range(users)]
        for _ in range(3):  # warm-up: model loads, connection pools, caches
            await turn(gw, auth, cases[0])
        prompt = await last_prompt(fake_url)  # the exact body the agent sends
        url = f"{fake_url}/v1/chat/completions"
        async with httpx.AsyncClient(timeout=30) as direct:
            for _ in range(3):
                await bare_call(direct, url, prompt)
            bare, one = [], []
            for _ in range(turns):  # interleaved, so both see the same machine load
                bare.append(await bare_call(direct, url, prompt))
                one.append(await turn(gw, auth, cases[0]))
            bare_first, sse_first = [], []
            for _ in range(max(10, turns // 2)):
                bare_first.append(await bare_first_chunk(direct, url, prompt))
                sse_first.append(await first_token(gw, auth, cases[0]))

        async def user(case_id: str, n: int) -> list[float]:
            return [await turn(gw, auth, case_id) for _ in range(n)]

        per_user = max(5, turns // 2)
        start = time.perf_counter()
        many = [t for ts in await asyncio.gather(*(user(c, per_user) for c in cases)) for t in ts]
        wall = time.perf_counter() - start
    bare_s, one_s, many_s = summary(bare), summary(one), summary(many)
    first_bare, first_sse = summary(bare_first), summary(sse_first)
    return {
        "bare_provider_call": bare_s,
        "turn_1_user": one_s,
        f"turn_{users}_users": many_s | {"turns_per_s": round(len(many) / wall, 1)},
        "overhead_p50_ms_1_user": round(one_s["p50_ms"] - bare_s["p50_ms"], 2),
        "overhead_p99_ms_1_user": round(one_s["p99_ms"] - bare_s["p99_ms"], 2),
        f"overhead_p50_ms_{users}_users": round(many_s["p50_ms"] - bare_s["p50_ms"], 2),
        "ratio_turn_to_bare_p50_1_user": round(one_s["p50_ms"] / bare_s["p50_ms"], 2),
        "bare_first_chunk": first_bare,
        "sse_first_token": first_sse,
        "first_token_overhead_p50_ms": round(first_sse["p50_ms"] - first_bare["p50_ms"], 2),
        "prompt_chars": sum(len(str(m.get("content", ""))) for m in prompt["messages"]),
        "turns_one_user": 3 + turns + max(10, turns // 2),
    }


PHASES = ("context_ms", "redact_ms", "llm_ms", "store_ms")


def phase_breakdown(log_dir: Path, one_user_turns: int, users: int) -> dict[str, Any]:
    """Where a turn's time goes, from the agent's `turn.answered` log lines (p50/p99):
    the turns at 1 user (they come first in the log), then those at `users` users."""
    log = log_dir / "agent.log"
    if not log.exists():
        return {}
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "turn.answered":
            events.append(event)
    out: dict[str, Any] = {}
    windows = (("1_user", events[:one_user_turns]), (f"{users}_users", events[one_user_turns:]))
    for label, window in windows:
        for key in PHASES:
            values = [float(e[key]) for e in window if isinstance(e.get(key), int | float)]
            if values:
                out.setdefault(label, {})[key] = {
                    "p50_ms": pct(values, 50),
                    "p99_ms": pct(values, 99),
                }
    return out


def write(result: dict[str, Any], users: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "agent.json").write_text(json.dumps(result, indent=2) + "\n")
    r = result["results"]
    lines = [
        "# Agent turn: platform overhead",
        "",
        f"Machine: {result['machine']}; 1-minute load average {result['load_average_1m']} "
        "(shared machine: other work inflates every number). Zero-latency fake provider "
        "(OpenAI wire protocol) in its own process.",
        "",
        "| measure | n | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for key in (
        "bare_provider_call",
        "turn_1_user",
        f"turn_{users}_users",
        "bare_first_chunk",
        "sse_first_token",
    ):
        s = r[key]
        lines.append(f"| {key} | {s['n']} | {s['p50_ms']} | {s['p99_ms']} |")
    for label, phases in result.get("agent_phases", {}).items():
        lines += ["", f"Inside the agent, {label.replace('_', ' ')} (from its log):", ""]
        lines += ["| phase | p50 ms | p99 ms |", "|---|---|---|"]
        lines += [f"| {k} | {v['p50_ms']} | {v['p99_ms']} |" for k, v in phases.items()]
    lines += [
        "",
        f"- Platform overhead p50 at 1 user: **{r['overhead_p50_ms_1_user']} ms** "
        f"(target < 50 ms; turn/bare = {r['ratio_turn_to_bare_p50_1_user']}x)",
        f"- Platform overhead p50 at {users} users: {r[f'overhead_p50_ms_{users}_users']} ms; "
        f"{r[f'turn_{users}_users']['turns_per_s']} turns/s",
        f"- First SSE token overhead p50: **{r['first_token_overhead_p50_ms']} ms** "
        "(target < 30 ms)",
        "",
    ]
    (RESULTS / "agent.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--users", type=int, default=8)
    args = parser.parse_args()
    # The fake provider runs in its own process, so the load generator never slows it.
    port = free_port()
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fm_common.testing.fake_llm",
            "--port",
            str(port),
            "--stream-chunk-chars",
            "16",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    fake_url = f"http://127.0.0.1:{port}"
    root = Path(tempfile.mkdtemp(prefix="fm-bench-agent-"))
    providers = [
        {
            "name": "fake",
            "kind": "openai_compatible",
            "model": "fake-model",
            "api_key": "bench-key",
            "base_url": f"{fake_url}/v1",
        }
    ]
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only=every_process_but("beat"),
        log_dir=root / "logs",
        extra_env={
            "FM_AGENT_PROVIDERS": json.dumps(providers),
            "FM_AUTH_BCRYPT_ROUNDS": "4",
            "FM_WORKER_CONCURRENCY": "1",
            "FM_LOG_LEVEL": "INFO",
            "FM_LOG_FORMAT": "json",
            "HF_HUB_OFFLINE": "1",
        },
    )
    load_before = os.getloadavg()[0]
    try:
        stack.start(timeout=240)
        results = asyncio.run(measure(stack, fake_url, args.turns, args.users))
        phases = phase_breakdown(root / "logs", results["turns_one_user"], args.users)
    finally:
        stack.stop()
        fake.terminate()
        fake.wait(timeout=10)
    result = {
        "name": "agent",
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "turns": args.turns,
        "users": args.users,
        "results": results,
        "agent_phases": phases,
        # Other work on the machine inflates every number; the 1-minute load says how much.
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "targets": {"overhead_p50_ms_1_user": 50, "first_token_overhead_p50_ms": 30},
    }
    write(result, args.users)
    print(json.dumps(result["results"], indent=2))
    print(
        f"platform overhead p50 (1 user): {results['overhead_p50_ms_1_user']} ms, "
        f"turn/bare ratio {results['ratio_turn_to_bare_p50_1_user']}x; "
        f"first-token overhead p50: {results['first_token_overhead_p50_ms']} ms"
    )


if __name__ == "__main__":
    main()
