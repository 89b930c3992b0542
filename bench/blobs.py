"""Blob store throughput: the local directory against S3 (moto's server, a local process).

Side by side in one run, the same bytes through fm_common.blobs as the services use it:
  - write: a 64 MiB blob in 1 MiB chunks through a BlobWriter (sha256 as it goes), then
    commit (local: fsync + rename; S3: 8 MiB multipart parts sent while writing, then
    CompleteMultipartUpload), in MB/s;
  - read: the blob streamed back in 256 KiB reads, in MB/s;
  - small: 200 blobs of 4 KiB (put) and their reads, per second (the extracted-text and
    small-log case; S3 pays one request each).
moto keeps objects in its own memory and runs on this machine: these numbers measure our
client path and the protocol's overhead, not a real S3, MinIO or Ceph (network, disks).
Writes bench/results/blobs.json and blobs.md.

    uv run --frozen --no-sync python bench/blobs.py [--runs 3] [--mib 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fm_common.blobs import BlobStore, LocalBlobStore
from fm_common.blobs.base import READ_CHUNK
from fm_common.testing.s3_server import S3Server

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
MIB = 1024 * 1024


def _write(store: BlobStore, key: str, chunk: bytes, chunks: int) -> float:
    started = time.perf_counter()
    writer = store.begin(key)
    for _ in range(chunks):
        writer.write(chunk)
    writer.commit()
    return time.perf_counter() - started


def _read(store: BlobStore, key: str) -> float:
    started = time.perf_counter()
    reader = store.open(key)
    try:
        while reader.read(READ_CHUNK):
            pass
    finally:
        reader.close()
    return time.perf_counter() - started


def _small(store: BlobStore, count: int) -> tuple[float, float]:
    data = os.urandom(4096)
    started = time.perf_counter()
    for n in range(count):
        store.put(f"text/{n}.txt", data)
    put = time.perf_counter() - started
    started = time.perf_counter()
    for n in range(count):
        store.read(f"text/{n}.txt")
    return put, time.perf_counter() - started


def measure(store: BlobStore, runs: int, mib: int) -> dict[str, Any]:
    chunk = os.urandom(MIB)
    writes, reads, puts, gets = [], [], [], []
    for run in range(runs):
        key = f"files/bench-{run}"
        writes.append(mib * MIB / _write(store, key, chunk, mib) / 1e6)
        reads.append(mib * MIB / _read(store, key) / 1e6)
        put, get = _small(store, 200)
        puts.append(200 / put)
        gets.append(200 / get)
        store.delete(key)
    med: Callable[[list[float]], float] = lambda v: round(statistics.median(v), 1)  # noqa: E731
    return {
        "write_mb_s": med(writes),
        "read_mb_s": med(reads),
        "small_put_per_s": med(puts),
        "small_get_per_s": med(gets),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": round(os.getloadavg()[0], 1),
        "mib": args.mib,
        "runs": args.runs,
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["local"] = measure(LocalBlobStore(Path(tmp) / "blobs"), args.runs, args.mib)
    server = S3Server().start()
    try:
        store = server.store(server.create_bucket(), prefix="bench/")
        results["s3_moto"] = measure(store, args.runs, args.mib)
    finally:
        server.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "blobs.json").write_text(json.dumps(results, indent=2) + "\n")
    local, s3 = results["local"], results["s3_moto"]
    lines = [
        "# Blob store throughput (bench/blobs.py)",
        "",
        f"{results['machine']}, load {results['load_before']}; a {args.mib} MiB blob written "
        "in 1 MiB chunks and read back, "
        f"and 200 blobs of 4 KiB; median of {args.runs} runs. S3 is moto's server on this "
        "machine (objects in its memory): our client path and the protocol's cost, not a "
        "real S3, MinIO or Ceph.",
        "",
        "| | local directory | S3 (moto, local) |",
        "|---|---|---|",
        f"| write + commit, MB/s | {local['write_mb_s']} | {s3['write_mb_s']} |",
        f"| streamed read, MB/s | {local['read_mb_s']} | {s3['read_mb_s']} |",
        f"| small put, blobs/s | {local['small_put_per_s']} | {s3['small_put_per_s']} |",
        f"| small read, blobs/s | {local['small_get_per_s']} | {s3['small_get_per_s']} |",
        "",
    ]
    (RESULTS / "blobs.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
