"""A real Chroma server (`chroma run`, shipped with the chromadb package) on a free port.

`chroma_server` (session) starts one process for the whole test session; `chroma_url`
gives each test a clean server (every collection deleted) and its URL.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fm_common.testing.ports import free_port


def find_chroma() -> str:
    """The `chroma` CLI of the Chroma server's own environment (scripts/bootstrap.sh,
    ADR 0156), else one on PATH."""
    from fm_common.devstack import CHROMA_BIN

    for exe in (CHROMA_BIN / "chroma", Path(sys.executable).parent / "chroma"):
        if exe.exists():
            return str(exe)
    path = shutil.which("chroma")
    if path is None:
        raise RuntimeError(
            "the `chroma` CLI is not installed (scripts/bootstrap.sh puts the Chroma server "
            f"in {CHROMA_BIN.parent})"
        )
    return path


class ChromaServer:
    """Starts `chroma run --path <workdir>`; stop() terminates it."""

    def __init__(self, workdir: Path, port: int | None = None, log_path: Path | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        self.log_path = log_path or workdir / "chroma.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ChromaServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                find_chroma(),
                "run",
                "--path",
                str(self.workdir / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"chroma exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"chroma not ready on {self.url} after {timeout}s")

    def reset(self) -> None:
        """Delete every collection (a clean state for the next test)."""
        import chromadb

        client = chromadb.HttpClient(host="127.0.0.1", port=self.port)
        for collection in client.list_collections():
            client.delete_collection(collection.name)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
