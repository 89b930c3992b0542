"""Gateway overhead: authenticated GET /api/v1/auth/me, direct vs through the gateway.

Starts redis + auth + session + gateway the way `make run` does (fm_common.devstack on
free ports), registers a user, then runs wrk against the auth service directly and
through the gateway, side by side in one run:
  - throughput: 16 connections (the issue's set-up), requests/s and p50/p99;
  - latency: 1 connection, p50/p99 (the added latency without queueing).
Also the idle RSS of every process. Writes bench/results/gateway.json and gateway.md.

    uv run --frozen --no-sync python bench/gateway.py [--duration 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from fm_common.devstack import Stack, free_port

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ME = "/api/v1/auth/me"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    lat: dict[str, float] = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if m:
            lat[f"p{pct}_ms"] = round(float(m.group(1)) * _UNITS[m.group(2)], 3)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return {
        "requests_per_s": rps,
        **lat,
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def wrk(url: str, token: str, *, connections: int, threads: int, duration: int) -> dict:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def compare(
    urls: dict[str, str],
    token: str,
    *,
    connections: int,
    threads: int,
    duration: int,
    rounds: int,
    tag: str,
    cpu_pids: dict[str, int] | None = None,
) -> dict[str, dict]:
    """Run wrk on each URL in interleaved rounds (order alternating), report medians.

    Interleaving makes a noisy neighbour on a shared machine hit both sides alike."""
    samples: dict[str, list[dict]] = {label: [] for label in urls}
    labels = list(urls)
    for r in range(rounds):
        for label in labels if r % 2 == 0 else labels[::-1]:
            before = {n: cpu_seconds(p) for n, p in (cpu_pids or {}).items()}
            run = wrk(
                urls[label], token, connections=connections, threads=threads, duration=duration
            )
            # CPU per request of each process: unlike req/s, barely moved by neighbours.
            for name, pid in (cpu_pids or {}).items():
                used = cpu_seconds(pid) - before[name]
                run[f"cpu_us_per_request_{name}"] = round(used / max(run["requests"], 1) * 1e6, 1)
            samples[label].append(run)
            print(f"{tag:14} round {r + 1} {label:8}: {run}")
    result = {}
    for label, runs in samples.items():
        keys = [k for k in runs[0] if all(k in x for x in runs)]
        result[label] = {k: round(statistics.median(x[k] for x in runs), 3) for k in keys}
        result[label]["rounds"] = runs
    return result


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def proxy_capacity(stack: Stack, token: str, args: argparse.Namespace) -> dict:
    """The proxy's own cost: a trivial FastAPI endpoint direct vs through a second gateway
    whose case route points at it (same token checks, Redis round trip and limits)."""
    up_port, gw_port = free_port(), free_port()
    env = stack.env()
    env.update({"FM_GATEWAY_PORT": str(gw_port), "FM_CASE_URL": f"http://127.0.0.1:{up_port}"})
    procs = [
        subprocess.Popen(
            [sys.executable, str(BENCH / "support" / "trivial_upstream.py"), str(up_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        _wait_http(f"http://127.0.0.1:{up_port}/health")
        _wait_http(f"http://127.0.0.1:{gw_port}/ready")
        urls = {
            "direct": f"http://127.0.0.1:{up_port}/api/v1/cases/c1",
            "gateway": f"http://127.0.0.1:{gw_port}/api/v1/cases/c1",
        }
        for url in urls.values():
            wrk(url, token, connections=args.connections, threads=args.threads, duration=2)
        runs = compare(
            urls,
            token,
            connections=args.connections,
            threads=args.threads,
            duration=args.duration,
            rounds=args.rounds,
            tag="trivial",
            cpu_pids={"upstream": procs[0].pid, "gateway": procs[1].pid},
        )
        lat = compare(
            urls,
            token,
            connections=1,
            threads=1,
            duration=args.latency_duration,
            rounds=args.rounds,
            tag="trivial 1c",
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
    return {
        "gateway_cpu_us_per_request": runs["gateway"].get("cpu_us_per_request_gateway"),
        "upstream_cpu_us_per_request": runs["direct"].get("cpu_us_per_request_upstream"),
        "throughput": runs,
        "latency_1_connection": lat,
        "ratio_gateway_to_direct": round(
            runs["gateway"]["requests_per_s"] / runs["direct"]["requests_per_s"], 3
        ),
        "added_p50_ms_1_connection": round(lat["gateway"]["p50_ms"] - lat["direct"]["p50_ms"], 3),
    }


def rss_mb(pid: int) -> float:
    """RSS of a process and its children, in MiB (from /proc)."""
    total_kb = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total_kb += int(m.group(1)) if m else 0
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            stack.extend(int(c) for c in task.read_text().split())
    return round(total_kb / 1024, 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: scripts/bootstrap.sh --bench installs it")
        return 1

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="fm-bench-gateway-"))
    stack = Stack(
        data_dir=work / "data",
        ports=Stack.free_ports(),
        only={"redis", "auth", "session", "gateway"},
        log_dir=work / "logs",
        extra_env={
            # The benchmark is one user hammering one route: lift the per-user limit so
            # it measures the proxy, not the 429 path.
            "FM_GATEWAY_RATE_LIMIT_PER_WINDOW": "100000000",
            "FM_AUTH_BCRYPT_ROUNDS": "4",
            "FM_ENVIRONMENT": "development",
        },
    )
    try:
        stack.start(timeout=120)
        time.sleep(2.0)
        idle_rss = {name: rss_mb(proc.pid) for name, proc in stack.procs.items()}
        gateway = stack.gateway_url
        with httpx.Client(base_url=gateway, timeout=30) as client:
            resp = client.post(
                "/api/v1/auth/register",
                json={"username": f"bench_{uuid.uuid4().hex[:8]}", "password": "bench-pass-123"},
            )
            resp.raise_for_status()
            token = resp.json()["access_token"]
            for base in (stack.url("auth"), gateway):
                check = httpx.get(f"{base}{ME}", headers={"Authorization": f"Bearer {token}"})
                check.raise_for_status()
        direct_url = f"{stack.url('auth')}{ME}"
        gateway_url = f"{gateway}{ME}"
        urls = {"direct": direct_url, "gateway": gateway_url}
        # Warm both paths (connection pools, caches).
        for url in urls.values():
            wrk(url, token, connections=args.connections, threads=args.threads, duration=2)
        runs = compare(
            urls,
            token,
            connections=args.connections,
            threads=args.threads,
            duration=args.duration,
            rounds=args.rounds,
            tag="throughput",
            cpu_pids={"auth": stack.procs["auth"].pid, "gateway": stack.procs["gateway"].pid},
        )
        latency = compare(
            urls,
            token,
            connections=1,
            threads=1,
            duration=args.latency_duration,
            rounds=args.rounds,
            tag="latency 1c",
        )
        loaded_rss = {name: rss_mb(proc.pid) for name, proc in stack.procs.items()}
        trivial = proxy_capacity(stack, token, args)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratio = runs["gateway"]["requests_per_s"] / runs["direct"]["requests_per_s"]
    added_p50_loaded = runs["gateway"]["p50_ms"] - runs["direct"]["p50_ms"]
    added_p50 = latency["gateway"]["p50_ms"] - latency["direct"]["p50_ms"]
    result = {
        "benchmark": "gateway",
        "route": f"GET {ME} (authenticated)",
        "tool": f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"{args.rounds} interleaved rounds",
        "rounds": args.rounds,
        "statistic": "median over interleaved rounds",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "throughput": runs,
        "latency_1_connection": latency,
        "ratio_gateway_to_direct": round(ratio, 3),
        "gateway_cpu_us_per_request": runs["gateway"].get("cpu_us_per_request_gateway"),
        "auth_cpu_us_per_request": runs["direct"].get("cpu_us_per_request_auth"),
        "added_p50_ms_1_connection": round(added_p50, 3),
        "added_p50_ms_loaded": round(added_p50_loaded, 3),
        "targets": {"ratio_min": 0.6, "added_p50_ms_max": 2.0},
        "meets_targets": ratio >= 0.6 and added_p50 < 2.0,
        "trivial_upstream": trivial,
        "idle_rss_mb": idle_rss,
        "idle_rss_mb_total": round(sum(idle_rss.values()), 1),
        "rss_mb_after_load": loaded_rss,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateway.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "gateway.md").write_text(markdown(result))
    print(
        f"gateway/direct throughput ratio: {ratio:.2f} (target >= 0.60); "
        f"added p50: {added_p50:.2f} ms at 1 connection, {added_p50_loaded:.2f} ms at "
        f"{args.connections} (target < 2 ms)"
    )
    print(f"idle RSS (MiB): {idle_rss}")
    return 0


def markdown(r: dict) -> str:
    t, lat, tr = r["throughput"], r["latency_1_connection"], r["trivial_upstream"]
    lines = [
        "# Gateway benchmark",
        "",
        f"{r['route']}, {r['tool']} (throughput) and 1 connection (latency); medians of "
        f"interleaved rounds. {r['machine']['cpus']} CPUs shared with whatever else runs "
        f"(load average {r['machine']['load_average_at_start'][0]} at start, "
        f"{r['machine']['load_average_at_end'][0]} at end); measured {r['measured_at']}.",
        "",
        "| path | req/s (16 conn) | p50 ms | p99 ms | p50 ms (1 conn) | p99 ms (1 conn) |",
        "|---|---|---|---|---|---|",
    ]
    for label in ("direct", "gateway"):
        lines.append(
            f"| {label} | {t[label]['requests_per_s']:.0f} | {t[label].get('p50_ms')} | "
            f"{t[label].get('p99_ms')} | {lat[label].get('p50_ms')} | {lat[label].get('p99_ms')} |"
        )
    lines += [
        "",
        f"- throughput ratio gateway/direct: **{r['ratio_gateway_to_direct']:.2f}** "
        "(target >= 0.60)",
        f"- added p50: **{r['added_p50_ms_1_connection']:.2f} ms** at 1 connection, "
        f"{r['added_p50_ms_loaded']:.2f} ms at 16 connections (target < 2 ms)",
        f"- CPU per request: auth {r['auth_cpu_us_per_request']} us serving /me; gateway "
        f"{r['gateway_cpu_us_per_request']} us proxying it (CPU time is what a busy "
        "machine does not distort)",
        "",
        "The proxy's own cost, in front of a trivial FastAPI endpoint (same token check, "
        "Redis round trip and limits; the upstream costs almost nothing, so this is the "
        "gateway's ceiling):",
        "",
        "| path | req/s (16 conn) | p50 ms | p99 ms | p50 ms (1 conn) |",
        "|---|---|---|---|---|",
        *[
            f"| trivial {label} | {tr['throughput'][label]['requests_per_s']:.0f} | "
            f"{tr['throughput'][label].get('p50_ms')} | {tr['throughput'][label].get('p99_ms')} | "
            f"{tr['latency_1_connection'][label].get('p50_ms')} |"
            for label in ("direct", "gateway")
        ],
        "",
        f"- ratio {tr['ratio_gateway_to_direct']:.2f}; added p50 at 1 connection "
        f"{tr['added_p50_ms_1_connection']:.2f} ms; CPU per request: upstream "
        f"{tr['upstream_cpu_us_per_request']} us, gateway {tr['gateway_cpu_us_per_request']} us",
        "",
        "| process | idle RSS (MiB) | RSS after load (MiB) |",
        "|---|---|---|",
    ]
    for name, mb in r["idle_rss_mb"].items():
        lines.append(f"| {name} | {mb} | {r['rss_mb_after_load'].get(name)} |")
    lines.append(f"| **total** | **{r['idle_rss_mb_total']}** | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
