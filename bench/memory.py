"""Idle memory of the whole `make run` system: the sum of the proportional set sizes.

Starts every process of faultmaven-deploy/Procfile the way `make run` does (devstack, the
worker with 2 children, no LLM provider) on free ports, once per embedding backend
(and once more with the default backend and FM_DEVSTACK_PREFORK=0: every Python process
started on its own instead of forked from the pre-imported fork server, ADR 0155),
waits until the knowledge service and the worker have loaded the embedding model and
the system is idle, then reads /proc/<pid>/smaps_rollup of every process in the
stack's sessions (children included) three times, 5 s apart, and reports the median
sum (PSS counts a page shared by n processes as 1/n in each, so the sum is what the
system holds). Target: < 1.0 GB with the default (onnx) backend.
The machine is shared: the load average is noted next to each figure.
Writes bench/results/memory.json and memory.md.

    uv run --frozen --no-sync python bench/memory.py [--runs onnx,torch,onnx-plain]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fm_common import preforked
from fm_common.devstack import Stack

RESULTS = Path(__file__).resolve().parent / "results"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) start at ") ".
    return int(stat.rsplit(") ", 1)[1].split()[3])


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample(stack: Stack) -> dict[str, dict[str, int]]:
    """Per Procfile process: PSS (kB) and process count of its whole session; "preload":
    the fork server the Python processes are forked from."""
    sessions = {proc.pid: name for name, proc in stack.procs.items()}
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"pss_kb": 0, "processes": 0})
    for pid in preforked.server_pids():
        out["preload"]["pss_kb"] += pss_kb(pid)
        out["preload"]["processes"] += 1
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        name = sessions.get(session_of(int(entry.name)) or -1)
        if name is None:
            continue
        out[name]["pss_kb"] += pss_kb(int(entry.name))
        out[name]["processes"] += 1
    return dict(out)


def wait_loaded(logs: Path, names: tuple[str, ...], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [n for n in names if "embedder.loaded" in _read(logs / f"{n}.log")]
        if len(done) == len(names):
            return
        time.sleep(1)
    raise TimeoutError(f"the embedding model did not load in {names} within {timeout}s")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def measure(run: str, settle: float) -> dict[str, Any]:
    """`run`: a backend (onnx, torch), with `-plain` for processes not forked."""
    backend, _, plain = run.partition("-")
    root = Path(tempfile.mkdtemp(prefix=f"fm-bench-memory-{run}-"))
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        log_dir=root / "logs",
        extra_env={
            "FM_LOG_FORMAT": "json",
            "FM_WORKER_CONCURRENCY": "2",  # make run's default
            "HF_HUB_OFFLINE": "1",
            "FM_EMBEDDING_BACKEND": backend,
            "FM_DEVSTACK_PREFORK": "0" if plain else "1",
        },
    )
    started = time.monotonic()
    stack.start(timeout=300)
    try:
        wait_loaded(root / "logs", ("knowledge", "worker"))
        ready = time.monotonic() - started
        time.sleep(settle)
        samples = []
        for i in range(3):
            if i:
                time.sleep(5)
            samples.append((sample(stack), load()))
        totals = [sum(p["pss_kb"] for p in s.values()) for s, _ in samples]
        median = sorted(range(3), key=lambda i: totals[i])[1]
        per, at_load = samples[median]
        return {
            "backend": backend,
            "run": run,
            "prefork": not plain,
            "ready_seconds": round(ready, 1),
            "total_mb": round(totals[median] / 1024, 1),  # MiB
            "total_gb": round(totals[median] * 1024 / 1e9, 3),  # 10^9 bytes
            "totals_mb": [round(t / 1024, 1) for t in totals],
            "load": at_load,
            "processes": {
                k: {"pss_mb": round(v["pss_kb"] / 1024, 1), "count": v["processes"]}
                for k, v in sorted(per.items(), key=lambda kv: -kv[1]["pss_kb"])
            },
        }
    finally:
        stack.stop()
        preforked.shutdown()  # each run its own fork server (none in a -plain run)
        shutil.rmtree(root, ignore_errors=True)


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(results, indent=2) + "\n")
    runs = results["runs"]
    lines = [
        "# Idle memory of the whole system (`make run`)",
        "",
        "MB = MiB; GB = 10^9 bytes. "
        f"Every Procfile process (worker with 2 children), idle after the embedding model "
        f"loaded, sum of PSS over every process of each entry's session; median of three "
        f"samples 5 s apart. {os.cpu_count()} CPUs shared with other work. Measured "
        f"{results['measured_at']}. Target < 1.0 GB (onnx). The Python processes are forked "
        f"from one pre-imported fork server (`preload`, ADR 0155); `-plain`: "
        f"FM_DEVSTACK_PREFORK=0, each started on its own as before.",
        "",
        "| process | " + " | ".join(f"{r['run']} MB (processes)" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    names: list[str] = []
    for r in runs:
        names += [n for n in r["processes"] if n not in names]
    for n in names:
        cells = []
        for r in runs:
            p = r["processes"].get(n)
            cells.append(f"{p['pss_mb']} ({p['count']})" if p else "-")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append(
        "| **total** | "
        + " | ".join(f"**{r['total_mb']}** ({r['total_gb']} GB)" for r in runs)
        + " |"
    )
    lines.append("| load (1 min) | " + " | ".join(str(r["load"]) for r in runs) + " |")
    lines.append("")
    (RESULTS / "memory.md").write_text("\n".join(lines))


def main() -> None:
    # The ONNX export that make run and the tests use (scripts/bootstrap.sh makes it).
    from fm_common.devstack import ROOT

    os.environ.setdefault("FM_EMBEDDING_ONNX_DIR", str(ROOT / ".cache" / "models"))
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="onnx,torch,onnx-plain")
    parser.add_argument("--settle", type=float, default=20.0, help="idle seconds before sampling")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runs": [],
    }
    for name in args.runs.split(","):
        run = measure(name, args.settle)
        print(json.dumps(run), flush=True)
        results["runs"].append(run)
        write(results)
    results["target_met"] = {
        r["run"]: r["total_gb"] < 1.0 for r in results["runs"] if r["run"] == "onnx"
    }
    write(results)
    print((RESULTS / "memory.md").read_text())


if __name__ == "__main__":
    main()
