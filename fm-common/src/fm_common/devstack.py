"""Run the whole system on one machine from faultmaven-deploy/Procfile (`make run`).

A small Procfile supervisor (in the manner of honcho/foreman) that also knows the
system's topology: it gives every process its port and every service the URLs of the
others, skips Procfile lines whose Python module is not installed, refuses to start on
a taken port with a clear message, waits until the gateway reports healthy, restarts a
child that dies with backoff (stores first, and says so), and stops everything on
Ctrl-C. System tests use the same `Stack` on free ports, so they start the real
processes the way `make run` does. The Python lines are forked from one pre-imported
fork server (`fm_common.preforked`, ADR 0155).

    python -m fm_common.devstack run [--data-dir data] [--base-port 8000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from fm_common import preforked

ROOT = Path(__file__).resolve().parents[3]
PROCFILE = ROOT / "faultmaven-deploy" / "Procfile"
# The Chroma server's own environment (scripts/bootstrap.sh makes it; ADR 0156).
CHROMA_BIN = ROOT / ".cache" / "chroma-server" / "bin"

# Service name -> (env prefix, default port). Redis and Chroma are the stores.
SERVICES: dict[str, tuple[str, int]] = {
    "gateway": ("FM_GATEWAY", 8000),
    "auth": ("FM_AUTH", 8001),
    "session": ("FM_SESSION", 8002),
    "case": ("FM_CASE", 8003),
    "knowledge": ("FM_KNOWLEDGE", 8004),
    "evidence": ("FM_EVIDENCE", 8005),
    "agent": ("FM_AGENT", 8006),
}
STORES: dict[str, tuple[str, int]] = {"chroma": ("FM_CHROMA", 8007), "redis": ("FM_REDIS", 6379)}
START_FIRST = ("redis", "chroma")
# Secrets go only to the processes that use them (issue 16 item 10: the service client
# secret was in the gateway's environment, readable by anything that reads it there).
SECRET_ENV: dict[str, frozenset[str]] = {
    # The callers of other services' /internal routes ask the auth service for service
    # tokens with it; auth checks it. Not the gateway, case or session (ADR 0135).
    "FM_SERVICE_CLIENT_SECRET": frozenset({"auth", "worker", "agent", "evidence", "knowledge"}),
    "FM_WORKER_SERVICE_CLIENT_SECRET": frozenset({"worker"}),
    "FM_AUTH_SERVICE_CLIENT_SECRET": frozenset({"auth"}),
    "FM_AUTH_BOOTSTRAP_ADMIN_PASSWORD": frozenset({"auth"}),
    # Provider API keys: the agent, and the worker that runs queued turns.
    "FM_AGENT_PROVIDERS": frozenset({"agent", "worker"}),
    # The key of the redaction map's originals: the agent and the worker's queued turns.
    "FM_AGENT_REDACTION_KEY": frozenset({"agent", "worker"}),
}


@dataclass(frozen=True)
class ProcSpec:
    name: str
    command: str

    def module(self) -> str | None:
        """The Python module the line runs (python -m X, celery -A X), if any."""
        m = re.match(r"python -m ([\w.]+)", self.command)
        if m:
            return m.group(1)
        m = re.search(r"celery -A ([\w.]+)", self.command)
        return m.group(1) if m else None

    def installed(self) -> bool:
        mod = self.module()
        if mod is None:
            exe = shlex.split(self.command)[0]
            return _which(exe) is not None
        try:
            return importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            return False


def _which(exe: str) -> str | None:
    from shutil import which

    return which(exe, path=os.pathsep.join([_bin_path(), os.environ["PATH"]]))


def _bin_path() -> str:
    """Where devstack's processes are looked up first: this venv's scripts (`python`,
    `celery`), then the Chroma server's environment (`chroma`)."""
    return os.pathsep.join([str(Path(sys.executable).parent), str(CHROMA_BIN)])


def read_procfile(path: Path = PROCFILE) -> list[ProcSpec]:
    specs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        specs.append(ProcSpec(name.strip(), command.strip()))
    return specs


def every_process_but(*left_out: str) -> set[str]:
    """The names of the Procfile's processes but `left_out`: a Stack's `only` for a
    benchmark or test that wants the whole system except, say, beat's periodic sweeps."""
    unknown = set(left_out) - {spec.name for spec in read_procfile()}
    if unknown:
        raise ValueError(f"not in the Procfile: {sorted(unknown)}")
    return {spec.name for spec in read_procfile()} - set(left_out)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    return free_port_set(1)[0]


def free_port_set(count: int) -> list[int]:
    """`count` distinct free ports. Each socket stays bound until all are chosen: ports
    picked one at a time may repeat, and two services given one port looked healthy
    (one answered for both) while requests went to the wrong one."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Stack:
    """The processes of the Procfile with their ports and environment."""

    data_dir: Path
    ports: dict[str, int]
    extra_env: Mapping[str, str] = field(default_factory=dict)
    only: set[str] | None = None
    log_dir: Path | None = None
    procs: dict[str, preforked.Proc] = field(default_factory=dict)
    specs: dict[str, ProcSpec] = field(default_factory=dict)
    _logs: dict[str, IO[bytes]] = field(default_factory=dict)
    service_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Procfile name -> how many instances (default 1). Instance i of `case` is the process
    # `case-i`, with its own port (`ports["case-i"]`), its own empty data dir
    # (<data_dir>/case-i) and log; `ports["case"]` and FM_CASE_URL are then the load
    # balancer's front, which `balancer` (anything with start() and stop(), started
    # after the stores and stopped last) serves. tests/system/test_replicas.py.
    replicas: Mapping[str, int] = field(default_factory=dict)
    balancer: Any = None

    @classmethod
    def default_ports(cls, base: int = 8000) -> dict[str, int]:
        ports = {name: base + (p - 8000) for name, (_, p) in SERVICES.items()}
        ports["chroma"] = base + 7
        ports["redis"] = 6379 if base == 8000 else free_port()
        return ports

    @classmethod
    def free_ports(cls, replicas: Mapping[str, int] | None = None) -> dict[str, int]:
        """A free port per service and store, and per instance of `replicas`."""
        names = [*SERVICES, *STORES]
        for name, count in (replicas or {}).items():
            names += instance_names(name, count) if name in SERVICES else []
        return dict(zip(names, free_port_set(len(names)), strict=True))

    def instances(self, name: str) -> list[str]:
        """The process names of Procfile line `name`: itself, or `name-1` .. `name-n`."""
        return instance_names(name, self.replicas.get(name, 1))

    def service_of(self, process: str) -> str:
        """The Procfile name a process runs (`case-2` -> `case`)."""
        if process in self.specs:
            return self.specs[process].name
        base, _, number = process.rpartition("-")
        return base if number.isdigit() and base in self.replicas else process

    def url(self, name: str) -> str:
        scheme = "https" if self.service_of(name) == "gateway" and self.gateway_tls else "http"
        return f"{scheme}://127.0.0.1:{self.ports[name]}"

    @property
    def gateway_tls(self) -> bool:
        """The gateway serves HTTPS itself (FM_GATEWAY_TLS_CERT_FILE set, ADR 0092)."""
        return bool(self.extra_env.get("FM_GATEWAY_TLS_CERT_FILE", "")) or bool(
            os.environ.get("FM_GATEWAY_TLS_CERT_FILE", "")
        )

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FM_DATA_DIR": str(self.data_dir),
                "FM_REDIS_PORT": str(self.ports["redis"]),
                "FM_REDIS_URL": self.redis_url,
                "FM_CHROMA_PORT": str(self.ports["chroma"]),
                "FM_CHROMA_URL": self.url("chroma"),
                "FM_WORKER_CONCURRENCY": env.get("FM_WORKER_CONCURRENCY", "2"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        # The worker's credential for service tokens (DESIGN.md "Identity"): one random
        # secret per run unless the operator set one.
        env.setdefault("FM_SERVICE_CLIENT_SECRET", self.service_secret)
        # One ONNX export of the embedding model for every local stack and test run
        # (made by scripts/bootstrap.sh, or by the first start that needs it).
        env.setdefault("FM_EMBEDDING_ONNX_DIR", str(ROOT / ".cache" / "models"))
        for name, (prefix, _) in SERVICES.items():
            env[f"{prefix}_PORT"] = str(self.ports[name])
            env[f"FM_{name.upper()}_URL"] = self.url(name)
        # The venv's scripts first, then Chroma's environment: `python`, `celery`, `chroma`.
        env["PATH"] = os.pathsep.join([_bin_path(), env.get("PATH", "")])
        env.update(self.extra_env)
        return env

    def selected(self) -> list[ProcSpec]:
        chosen = []
        for spec in read_procfile():
            if self.only is not None and spec.name not in self.only:
                continue
            if spec.installed():
                chosen.append(spec)
        return chosen

    def check_ports(self) -> None:
        taken = [
            f"{self.ports[s.name]} ({s.name})"
            for s in self.selected()
            if s.name in self.ports and port_in_use(self.ports[s.name])
        ]
        if taken:
            raise SystemExit(
                f"port already in use: {', '.join(taken)}. Stop what holds it, or run on "
                f"other ports: make run BASE_PORT=9000"
            )

    def start(self, wait: bool = True, timeout: float = 120.0) -> Stack:
        for sub in ("redis", "chroma"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        specs = sorted(self.selected(), key=lambda s: s.name not in START_FIRST)
        env = self.env()
        balanced = False
        for spec in specs:
            if spec.name not in START_FIRST and self.balancer is not None and not balanced:
                self.balancer.start()
                balanced = True
            for name in self.instances(spec.name):
                self.specs[name] = spec
                self.start_process(name, env)
                if spec.name in START_FIRST:
                    _wait_port(self.ports[name], timeout=60, proc=self.procs[name], name=name)
        if wait:
            self.wait_healthy(timeout)
        return self

    def process_env(self, name: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of process `name`: every secret it does not use left out."""
        env = self.env() if env is None else env
        return {k: v for k, v in env.items() if name in SECRET_ENV.get(k, frozenset({name}))}

    def instance_env(self, name: str) -> dict[str, str]:
        """What instance `name` of a replicated line has of its own: its port, its data
        dir (empty at first start), and its worker name."""
        service = self.service_of(name)
        if name == service:
            return {}
        env = {"FM_DATA_DIR": str(self.data_dir / name), "FM_WORKER_NAME": name}
        if service in SERVICES:
            env[f"{SERVICES[service][0]}_PORT"] = str(self.ports[name])
        return env

    def start_process(self, name: str, env: dict[str, str] | None = None) -> None:
        spec = self.specs[name]
        env = self.process_env(spec.name, env) | self.instance_env(name)
        if name != spec.name:
            Path(env["FM_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        command = os.path.expandvars(_expand(spec.command, env))
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if name in self._logs:  # a restart: the dead child's log handle
                self._logs.pop(name).close()
            out: IO[bytes] | int = open(self.log_dir / f"{name}.log", "ab")
            self._logs[name] = out  # type: ignore[assignment]
        else:
            out = subprocess.PIPE
        # Python entry points are forked from one pre-imported parent (ADR 0155).
        proc = preforked.spawn(shlex.split(command), env=env, cwd=ROOT, stdout=out)
        self.procs[name] = proc
        if out == subprocess.PIPE:
            threading.Thread(target=_pump, args=(name, proc), daemon=True).start()

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Wait until every started service answers /health."""
        deadline = time.monotonic() + timeout
        pending = [n for n in self.procs if self.service_of(n) in SERVICES]
        # Only "does it answer": the gateway's certificate need not name 127.0.0.1.
        with httpx.Client(timeout=2.0, verify=not self.gateway_tls) as client:
            while pending:
                for name in list(pending):
                    proc = self.procs[name]
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode} while starting")
                    try:
                        resp = client.get(f"{self.url(name)}/health")
                    except httpx.HTTPError:
                        continue
                    if resp.status_code == 200:
                        _check_identity(self.service_of(name), self.ports[name], resp)
                        pending.remove(name)
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not healthy after {timeout}s: {', '.join(pending)}")
                if pending:
                    time.sleep(0.2)

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        # Services first, stores last, so nothing loses its store while draining.
        order = [n for n in self.procs if n not in START_FIRST] + [
            n for n in START_FIRST if n in self.procs
        ]
        threads = [
            threading.Thread(target=self.stop_process, args=(n,))
            for n in order
            if n not in START_FIRST
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.balancer is not None:
            self.balancer.stop()
        for name in START_FIRST:
            self.stop_process(name)
        for fh in self._logs.values():
            fh.close()

    def first_dead(self) -> str | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name
        return None


@dataclass
class Restarter:
    """Restarts dead children with exponential backoff, as a process manager would
    (issue 16 item 4: a dead Redis used to stop everything in 0.2 s). Stores first: a
    service waits while a store it needs is down. A child that stays up for
    `stable_seconds` has its backoff reset. `tick()` is called by the supervisor loop
    and returns what it did, for the person at the terminal."""

    stack: Stack
    base_delay: float = 1.0
    max_delay: float = 30.0
    stable_seconds: float = 60.0
    failures: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def tick(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        said: list[str] = []
        order = [n for n in START_FIRST if n in self.stack.procs] + [
            n for n in self.stack.procs if n not in START_FIRST
        ]
        stores_down = False
        for name in order:
            proc = self.stack.procs[name]
            code = proc.poll()
            if code is None:
                if (
                    name in self.failures
                    and now - self.started.get(name, now) > self.stable_seconds
                ):
                    del self.failures[name]
                if name in START_FIRST and not port_in_use(self.stack.ports[name]):
                    stores_down = True  # restarted, not yet listening
                continue
            if name in START_FIRST:
                stores_down = True
            if name not in self.due:
                count = self.failures.get(name, 0)
                delay = min(self.max_delay, self.base_delay * 2**count)
                self.failures[name] = count + 1
                self.due[name] = now + delay
                said.append(
                    f"FaultMaven: {name} exited with {code}; restarting it in {delay:g} s "
                    f"(restart {count + 1})"
                )
                continue
            if now < self.due[name] or (name not in START_FIRST and stores_down):
                continue
            self.stack.start_process(name)
            self.started[name] = now
            del self.due[name]
            said.append(f"FaultMaven: {name} restarted")
        return said


def instance_names(name: str, count: int) -> list[str]:
    return [name] if count <= 1 else [f"{name}-{i}" for i in range(1, count + 1)]


def _check_identity(name: str, port: int, resp: httpx.Response) -> None:
    """The service answering on `name`'s port must be `name` (not a process that held
    the port first)."""
    try:
        body = resp.json()
    except ValueError:
        return
    other = body.get("service") if isinstance(body, dict) else None
    if isinstance(other, str) and other != name:
        raise RuntimeError(f"port {port} of {name} is answered by the {other} service")


def _expand(command: str, env: Mapping[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        return env.get(m.group(1), m.group(2) or "")

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", repl, command)


def _wait_port(port: int, timeout: float, proc: preforked.Proc, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} while starting")
        if port_in_use(port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{name} does not listen on {port} after {timeout}s")


_COLORS = ["36", "32", "33", "35", "34", "31", "96", "92", "93", "95", "94"]


def _pump(name: str, proc: preforked.Proc) -> None:
    color = _COLORS[hash(name) % len(_COLORS)]
    tty = sys.stdout.isatty()
    prefix = f"\033[{color}m{name:>9} |\033[0m " if tty else f"{name:>9} | "
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        sys.stdout.write(prefix + raw.decode(errors="replace"))
        sys.stdout.flush()


def _say(text: str) -> None:
    """A line for the person who typed `make run` (the services log JSON on their own)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fm_common.devstack")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the whole system until Ctrl-C")
    run.add_argument("--data-dir", default=os.environ.get("FM_DATA_DIR", "data"))
    run.add_argument("--base-port", type=int, default=int(os.environ.get("BASE_PORT", "8000")))
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir).resolve()
    stack = Stack(data_dir=data_dir, ports=Stack.default_ports(args.base_port))
    stack.check_ports()
    stopping = threading.Event()

    def _stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    names = ", ".join(s.name for s in stack.selected())
    _say(f"FaultMaven: starting {names} (data in {data_dir})")
    try:
        stack.start(wait=False)
        deadline = time.monotonic() + 180
        healthy = False
        restarter = Restarter(stack)
        while not stopping.is_set():
            # A dead child is restarted with backoff (stores first), not the end of all.
            for line in restarter.tick():
                _say(line)
            if not healthy:
                try:
                    stack.wait_healthy(timeout=0.5)
                    healthy = True
                    _say(
                        f"\nFaultMaven is up: {stack.gateway_url}/  (dashboard; API docs: "
                        f"{stack.gateway_url}/docs, health: {stack.gateway_url}/health)\n"
                        "Press Ctrl-C to stop.\n",
                    )
                except (TimeoutError, RuntimeError):
                    # RuntimeError: a process exited while starting; first_dead() reports it.
                    if time.monotonic() > deadline:
                        _say("FaultMaven: not healthy after 180 s; stopping")
                        return 1
            time.sleep(0.5)
        return 0
    finally:
        _say("FaultMaven: stopping")
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
