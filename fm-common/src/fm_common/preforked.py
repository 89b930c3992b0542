"""Start the Procfile's Python processes forked from one pre-imported parent (ADR 0155).

Every FaultMaven service imports the same ~1000 modules (FastAPI, pydantic, SQLAlchemy,
uvicorn, httpx, redis, cryptography, Celery ...), and each copy of their objects is
50-80 MB of private heap. `make run` therefore starts its Python processes the way
gunicorn's `--preload` starts workers: a fork server (`python -m fm_common.preforked`)
imports those libraries once (`fm_common.preforked_imports`, which then freezes the
garbage collector so that no collection writes to the shared objects), and every
service is forked from it, so the pages nobody writes to stay shared by all of them.

A forked child is the process `subprocess.Popen` would have started: its own session
(`os.killpg` stops it with its children, bench/memory.py counts them), only the
environment it was given, the given working directory, stdout and stderr to the given
file or pipe, and `python -m X` or a console script of this venv (`celery ...`) run as
its `__main__`; its exit code comes back from the fork server, which reaps it. What
differs: the services share the fork server's hash seed and interpreter options, and the
modules the fork server imported saw the supervisor's environment, not the service's
(so it imports only libraries, none that reads FM_* settings or starts threads at
import: no numpy, no ONNX Runtime).

`spawn()` is the one hook devstack calls. FM_DEVSTACK_PREFORK=0 turns it off (plain
`subprocess.Popen` for every line); lines that are not Python entry points of this venv
(redis-server, chroma) always run as plain processes.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Any, Protocol

PRELOAD_MODULE = "fm_common.preforked_imports"


class Proc(Protocol):
    """What the supervisor uses of a child: subprocess.Popen's names."""

    pid: int
    stdout: IO[bytes] | None

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def enabled(env: Mapping[str, str]) -> bool:
    return env.get("FM_DEVSTACK_PREFORK", "1").strip().lower() not in {"0", "false", "no", "off"}


def entry(argv: list[str]) -> tuple[str, str] | None:
    """("module", name) for `python -m name ...`, ("script", name) for a console script
    of this venv (celery), None for anything else (redis-server; chroma, which comes
    from its own environment)."""
    if len(argv) >= 3 and Path(argv[0]).name in {"python", "python3"} and argv[1] == "-m":
        return ("module", argv[2])
    exe = Path(argv[0])
    if exe.parent not in {Path(), Path(sys.executable).parent}:
        return None
    if entry_points(group="console_scripts", name=exe.name):
        return ("script", exe.name)
    return None


def spawn(argv: list[str], *, env: dict[str, str], cwd: Path, stdout: IO[bytes] | int) -> Proc:
    """Start `argv` as devstack did with Popen: forked from the fork server when it is a
    Python entry point of this venv and prefork is on. `stdout` is an open file or
    subprocess.PIPE (the child's output then comes back on the result's `stdout`)."""
    kind = entry(argv) if enabled(env) else None
    if kind is None:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ForkedProcess(kind, argv, env=env, cwd=cwd, stdout=stdout)


def server_pids() -> list[int]:
    """The fork server's pid, once started (its memory is the system's too: bench/memory.py
    counts it)."""
    server = _server
    return [server.proc.pid] if server is not None and server.proc.poll() is None else []


def shutdown(timeout: float = 30.0) -> None:
    """Stop the fork server (it exits when its socket closes); the next spawn starts a
    new one. Its children are not touched: stop them first."""
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is None:
        return
    server.sock.close()
    try:
        server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


class _Server:
    """The supervisor's end of the fork server: one request at a time on a SEQPACKET
    socket (the child's stdout goes along as a file descriptor); a reader thread collects
    the replies (the child's pid) and the exit codes the server sends as it reaps."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fm_common.preforked", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.sock = ours
        self.lock = threading.Lock()
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.exits: dict[int, int] = {}
        self.done = threading.Condition()
        self.gone = False
        threading.Thread(target=self._read, name="preforked-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:  # the server is gone: nothing will report exits any more
                with self.done:
                    self.gone = True
                    self.done.notify_all()
                self.replies.put({"error": "the fork server exited"})
                return
            msg = json.loads(data)
            if "exit" in msg:
                with self.done:
                    self.exits[int(msg["exit"])] = int(msg["code"])
                    self.done.notify_all()
            else:
                self.replies.put(msg)

    def fork(self, request: dict[str, Any], out_fd: int) -> int:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [out_fd])
            reply = self.replies.get(timeout=120)
        if "pid" not in reply:
            raise RuntimeError(f"cannot start {request['argv'][0]}: {reply.get('error')}")
        return int(reply["pid"])

    def wait(self, pid: int, timeout: float | None) -> int | None:
        with self.done:
            self.done.wait_for(lambda: pid in self.exits or self.gone, timeout)
            return self.exits.get(pid)


_server: _Server | None = None
_server_lock = threading.Lock()


def _the_server() -> _Server:
    global _server
    with _server_lock:
        if _server is None or _server.gone or _server.proc.poll() is not None:
            _server = _Server()
        return _server


class ForkedProcess:
    """A child of the fork server with the part of subprocess.Popen's interface that
    devstack uses (pid, poll, wait, returncode, stdout)."""

    def __init__(
        self,
        kind: tuple[str, str],
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdout: IO[bytes] | int,
    ) -> None:
        self.args = argv
        self.stdout: IO[bytes] | None = None
        read_end = None
        if stdout == subprocess.PIPE:
            read_end, out_fd = os.pipe()
        elif isinstance(stdout, int):
            out_fd = stdout
        else:
            out_fd = stdout.fileno()
        self._server = _the_server()
        request = {"kind": list(kind), "argv": argv, "env": env, "cwd": str(cwd)}
        try:
            self.pid = self._server.fork(request, out_fd)
        finally:
            if read_end is not None:
                os.close(out_fd)
        if read_end is not None:
            self.stdout = open(read_end, "rb")  # the pump reads it until EOF

    @property
    def returncode(self) -> int | None:
        return self._server.exits.get(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self._server.wait(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code


# ---- the fork server: python -m fm_common.preforked FD -------------------------------


def serve(fd: int) -> dict[str, Any]:
    """Import the shared libraries, then fork a child per request until the supervisor's
    end of the socket closes (then exit). Returns only in a forked child: its request."""
    importlib.import_module(PRELOAD_MODULE)
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the supervisor to handle
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is not sock:
                os.read(wake_r, 4096)
                _reap(sock)
                continue
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
            if not data:
                sys.exit(0)
            request: dict[str, Any] = json.loads(data)
            pid = os.fork()
            if pid == 0:
                sel.close()
                sock.close()
                signal.set_wakeup_fd(-1)
                os.close(wake_r)
                os.close(wake_w)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                request["out"] = fds[0]
                return request
            for f in fds:
                os.close(f)
            sock.send(json.dumps({"pid": pid}).encode())


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _child(kind: list[str], argv: list[str], env: dict[str, str], cwd: str, out: int) -> None:
    """In the forked child: become the process Popen would have started, then run the
    entry point as __main__ (its SystemExit is the exit code; the interpreter then ends as
    any other does: threads joined, atexit handlers run)."""
    os.setsid()
    os.dup2(out, 1)
    os.dup2(out, 2)
    if out > 2:
        os.close(out)
    # Unbuffered text streams on the new fds, as PYTHONUNBUFFERED gives a new interpreter.
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), write_through=True, line_buffering=True
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        write_through=True,
        line_buffering=True,
        errors="backslashreplace",
    )
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    how, name = kind
    # Its name in top and `ps -o comm` (the command line stays the fork server's).
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])
    if how == "module":
        import runpy

        sys.path.insert(0, cwd)  # as `python -m` puts the working directory first
        sys.argv = [name, *argv[3:]]
        runpy.run_module(name, run_name="__main__", alter_sys=True)
        return
    (ep,) = entry_points(group="console_scripts", name=name)
    sys.argv = [name, *argv[1:]]
    sys.exit(ep.load()())


if __name__ == "__main__":
    req = serve(int(sys.argv[1]))
    _child(req["kind"], req["argv"], req["env"], req["cwd"], req["out"])
