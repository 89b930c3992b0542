"""A real PostgreSQL server for tests: initdb + postgres on a free port in a temp dir.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
`postgres` OS user (Debian's package creates it) in a temp dir chowned to it. Where the
binaries or that user are missing, `PostgresUnavailable` says exactly why and the
fixtures skip with that reason (never silently).

    server = PostgresServer().start()
    url = server.create_database()       # postgresql+asyncpg://postgres@127.0.0.1:port/db_x
    server.stop()
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fm_common.testing.ports import free_port, wait_for_port


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here (the message says why)."""


def find_pg_bin() -> Path:
    """The folder of initdb/postgres: PATH first, then Debian's /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) are not installed; "
        "`make test` installs them (scripts/bootstrap.sh --test, Debian package postgresql)"
    )


class PostgresServer:
    """One throwaway PostgreSQL cluster (trust auth on 127.0.0.1, fsync off)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = find_pg_bin()
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_user: dict[str, Any] = {}

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root and there is no `postgres` OS user to run the server as "
                "(PostgreSQL refuses to run as root)"
            ) from None
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60.0) -> PostgresServer:
        self._as_user = self._run_as()
        # Not under pytest's basetemp: its parents are 0700 root, unreadable to `postgres`.
        self.workdir = Path(tempfile.mkdtemp(prefix="fm-pg-"))
        data, sock = self.workdir / "data", self.workdir / "sock"
        sock.mkdir()
        if self._as_user:
            for path in (self.workdir, sock):
                os.chown(path, self._as_user["user"], self._as_user["group"])
        log = self.workdir / "postgres.log"
        init = subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            cwd=self.workdir,
            check=False,
            **self._as_user,
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.decode(errors='replace')}")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(sock),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                **self._as_user,
            )
        try:
            wait_for_port(self.port, timeout=timeout)
            self._wait_ready(timeout)
        except (TimeoutError, PostgresUnavailable) as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self.stop()
            raise PostgresUnavailable(f"postgres did not start: {exc}\n{tail}") from exc
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PostgresUnavailable(f"postgres exited with {self.proc.returncode}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise PostgresUnavailable("postgres is not accepting connections")

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database; returns its SQLAlchemy asyncpg URL."""
        name = name or f"db_{uuid.uuid4().hex[:12]}"
        subprocess.run(
            [
                str(self.bin / "createdb"),
                *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"),
                name,
            ],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: ends open sessions
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
