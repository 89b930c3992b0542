"""Cases and evidence through the gateway, with the real processes.

Starts redis + auth + session + case + evidence + gateway the way `make run` does
(fm_common.devstack on free ports), registers a user, then, side by side in one run:
  - case create (POST /api/v1/cases) and message-page read
    (GET /api/v1/cases/{id}/messages?limit=50 on a case with 50 messages): requests/s
    and p50/p99 at 1 and at 16 concurrent clients (wrk; a Lua script for the POST);
  - evidence upload of a 50 MB log (POST /api/v1/evidence, multipart, curl streaming the
    file) through the gateway and straight to the evidence service, in MB/s, against a
    plain file copy (shutil.copyfile) of the same 50 MB on the same disk: the limit. The
    upload also fsyncs; a copy + fsync is reported beside it for that reason.
Writes bench/results/cases.json and cases.md.

    uv run --frozen --no-sync python bench/cases.py [--duration 5] [--upload-runs 3]
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
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from fm_common.devstack import Stack

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
UPLOAD_BYTES = 50 * 1000 * 1000
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

CREATE_LUA = """
wrk.method = "POST"
wrk.body   = '{"title": null, "priority": "low"}'
wrk.headers["Content-Type"] = "application/json"
"""


def parse_wrk(output: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    result: dict[str, float] = {"requests_per_s": round(float(rps.group(1)), 1)}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if m:
            result[f"p{pct}_ms"] = round(float(m.group(1)) * _UNITS[m.group(2)], 2)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["requests"] = int(total.group(1)) if total else 0
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    return result


def wrk(url: str, token: str, clients: int, duration: int, script: Path | None = None) -> dict:
    cmd = ["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{duration}s", "--latency"]
    cmd += ["-H", f"Authorization: Bearer {token}"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def make_log(path: Path, size: int) -> None:
    """A realistic log of `size` bytes: timestamped lines with levels and varying fields."""
    levels = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")
    with path.open("wb") as fh:
        written, i = 0, 0
        while written < size:
            lines = []
            for _ in range(1000):
                line = (
                    f"2024-05-01T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z "
                    f"{levels[i % 6]} [worker-{i % 16}] request_id={i:08x} "
                    f"path=/api/v1/items/{i % 977} status={200 + (i % 7 == 0) * 300} "
                    f"latency_ms={i % 1500}\n"
                )
                lines.append(line)
                i += 1
            chunk = "".join(lines).encode()[: size - written]
            fh.write(chunk)
            written += len(chunk)


def curl_upload(base: str, token: str, case_id: str, path: Path) -> float:
    """Seconds to upload `path` (curl streams it from disk); raises unless 201."""
    out = subprocess.run(
        [
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
            "-H", f"Authorization: Bearer {token}", "-H", "Expect:",
            "-F", f"case_id={case_id}", "-F", f"file=@{path};filename=service.log",
            f"{base}/api/v1/evidence",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    status, seconds = out.split()
    if status != "201":
        raise RuntimeError(f"upload answered {status}")
    return float(seconds)


def timed_copy(src: Path, dst: Path, *, fsync: bool) -> float:
    start = time.perf_counter()
    shutil.copyfile(src, dst)
    if fsync:
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def mbps(seconds: list[float], size: int) -> dict[str, float]:
    best = min(seconds)
    med = statistics.median(seconds)
    return {
        "median_mb_per_s": round(size / 1e6 / med, 1),
        "best_mb_per_s": round(size / 1e6 / best, 1),
        "runs_s": [round(s, 3) for s in seconds],
    }


def new_case(client: httpx.Client, **body: object) -> str:
    resp = client.post("/api/v1/cases", json={"title": None, "priority": "low", **body})
    resp.raise_for_status()
    return str(resp.json()["case_id"])


def fill_messages(stack: Stack, token: str, case_id: str, turns: int) -> None:
    """`turns` user+assistant pairs through the case service's internal turn route."""
    with httpx.Client(base_url=stack.url("case"), timeout=30) as client:
        for n in range(turns):
            resp = client.post(
                f"/internal/v1/cases/{case_id}/turns",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "turn_key": f"bench-{case_id}-{n}",
                    "user_message": {"content": f"Question {n}: why is the API slow? " * 4},
                    "assistant_message": {"content": f"Answer {n}: check the pool. " * 12},
                },
            )
            resp.raise_for_status()


def run(args: argparse.Namespace, work: Path) -> dict:
    stack = Stack(
        data_dir=work / "data",
        ports=Stack.free_ports(),
        only={"redis", "auth", "session", "case", "evidence", "gateway"},
        log_dir=work / "logs",
        extra_env={
            # One user hammering a few routes: lift the per-user limit so the benchmark
            # measures the services, not the 429 path.
            "FM_GATEWAY_RATE_LIMIT_PER_WINDOW": "100000000",
            "FM_AUTH_BCRYPT_ROUNDS": "4",
            "FM_ENVIRONMENT": "development",
            "FM_EVIDENCE_MAX_FILE_BYTES": str(64 * 1024 * 1024),
            # No worker runs here: indexing is not part of the upload's cost.
            "FM_EVIDENCE_INDEX_UPLOADS": "false",
        },
    )
    result: dict = {}
    try:
        stack.start(timeout=180)
        gateway = stack.gateway_url
        with httpx.Client(base_url=gateway, timeout=60) as client:
            resp = client.post(
                "/api/v1/auth/register",
                json={"username": f"bench_{uuid.uuid4().hex[:8]}", "password": "bench-pass-123"},
            )
            resp.raise_for_status()
            token = resp.json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            read_case = new_case(client)
            fill_messages(stack, token, read_case, 25)
            page = client.get(f"/api/v1/cases/{read_case}/messages", params={"limit": 50})
            page.raise_for_status()
            assert len(page.json()["messages"]) == 50, page.json()["total_count"]
            upload_cases = [new_case(client) for _ in range(2 * args.upload_runs + 1)]

        script = work / "create.lua"
        script.write_text(CREATE_LUA)
        create_url = f"{gateway}/api/v1/cases"
        read_url = f"{gateway}/api/v1/cases/{read_case}/messages?limit=50"
        wrk(read_url, token, 16, 2)  # warm-up
        wrk(create_url, token, 16, 2, script)
        requests: dict[str, dict] = {}
        for clients in (1, 16):
            for name, url, lua in (
                ("case_create", create_url, script),
                ("messages_page_read", read_url, None),
            ):
                key = f"{name}_{clients}_clients"
                requests[key] = wrk(url, token, clients, args.duration, lua)
                print(f"{key:32} {requests[key]}")
        result["requests"] = requests

        log_path = work / "data" / "bench-50mb.log"
        make_log(log_path, UPLOAD_BYTES)
        copies = [timed_copy(log_path, log_path.with_suffix(".copy"), fsync=False)
                  for _ in range(args.upload_runs)]  # fmt: skip
        copies_fsync = [timed_copy(log_path, log_path.with_suffix(".copy"), fsync=True)
                        for _ in range(args.upload_runs)]  # fmt: skip
        cases = iter(upload_cases)
        curl_upload(gateway, token, next(cases), log_path)  # warm-up
        via_gateway, direct = [], []
        for _ in range(args.upload_runs):
            via_gateway.append(curl_upload(gateway, token, next(cases), log_path))
            direct.append(curl_upload(stack.url("evidence"), token, next(cases), log_path))
        upload = {
            "file_bytes": UPLOAD_BYTES,
            "upload_via_gateway": mbps(via_gateway, UPLOAD_BYTES),
            "upload_direct_to_evidence": mbps(direct, UPLOAD_BYTES),
            "copyfile": mbps(copies, UPLOAD_BYTES),
            "copyfile_fsync": mbps(copies_fsync, UPLOAD_BYTES),
        }
        up = upload["upload_via_gateway"]["median_mb_per_s"]
        upload["ratio_upload_to_copyfile"] = round(up / upload["copyfile"]["median_mb_per_s"], 3)
        upload["ratio_upload_to_copyfile_fsync"] = round(
            up / upload["copyfile_fsync"]["median_mb_per_s"], 3
        )
        for key in ("upload_via_gateway", "upload_direct_to_evidence", "copyfile",
                    "copyfile_fsync"):  # fmt: skip
            print(f"{key:32} {upload[key]}")
        result["upload"] = upload
    finally:
        stack.stop()
    return result


def markdown(r: dict) -> str:
    lines = [
        "# Cases and evidence benchmark",
        "",
        f"Through the gateway with the real processes (redis, auth, session, case, evidence, "
        f"gateway), {r['machine']['cpus']} CPUs, measured {r['measured_at']}. "
        f"wrk, {r['duration_s']} s per run. 1-minute load average before/after: "
        f"{r['load_average_1m'][0]} / {r['load_average_1m'][1]} (other work on the machine "
        f"skews the numbers).",
        "",
        "| route | clients | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for key, v in r["requests"].items():
        name, clients = key.rsplit("_", 2)[0], key.rsplit("_", 2)[1]
        lines.append(
            f"| {name} | {clients} | {v['requests_per_s']} | {v.get('p50_ms')} | "
            f"{v.get('p99_ms')} | {v['non_2xx']} |"
        )
    u = r["upload"]
    lines += [
        "",
        f"Evidence upload of a {u['file_bytes'] / 1e6:.0f} MB log (multipart, curl), median of "
        f"{len(u['copyfile']['runs_s'])} runs:",
        "",
        "| what | MB/s (median) | MB/s (best) |",
        "|---|---|---|",
    ]
    for key in ("upload_via_gateway", "upload_direct_to_evidence", "copyfile", "copyfile_fsync"):
        lines.append(f"| {key} | {u[key]['median_mb_per_s']} | {u[key]['best_mb_per_s']} |")
    lines += [
        "",
        f"- upload through the gateway / shutil.copyfile: **{u['ratio_upload_to_copyfile']}**",
        f"- upload through the gateway / copyfile + fsync: "
        f"**{u['ratio_upload_to_copyfile_fsync']}**",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--upload-runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: scripts/bootstrap.sh --bench installs it")
            return 1
    work = Path(tempfile.mkdtemp(prefix="fm-bench-cases-"))
    load_before = os.getloadavg()
    try:
        measured = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "cases",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_s": args.duration,
        # Other work on the machine skews every number: the 1-minute load before and after.
        "load_average_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        **measured,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cases.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "cases.md").write_text(markdown(result))
    u = result["upload"]
    print(
        f"upload {u['upload_via_gateway']['median_mb_per_s']} MB/s vs copyfile "
        f"{u['copyfile']['median_mb_per_s']} MB/s: ratio {u['ratio_upload_to_copyfile']} "
        f"(vs copyfile+fsync: {u['ratio_upload_to_copyfile_fsync']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
