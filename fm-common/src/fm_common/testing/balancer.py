"""A real load balancer for tests: HAProxy (Debian's `haproxy`) in front of the replicas
of a `Stack`, round-robin per service, as a platform's ingress and Kubernetes Services
would put them.

Each service gets a front port (`stack.ports[name]`, which FM_<NAME>_URL points at, so
services reach each other through it too) and a backend of its instances with health
checks (`/health`), retries of connections that fail (a killed replica) on the other
instance, and two marks of who served what:

- an `X-Served-By: <instance>` response header;
- one log line per request: `<service> <instance> <status> <method> <path> rid=<X-Request-ID>`.
  The gateway and every service client pass the caller's X-Request-ID on, so the lines of
  one request id show every replica it crossed (`served()`).

    balancer = HAProxy(stack, log=path)  # stack.balancer = balancer; stack.start()
    balancer.served(rid)                 # [("gateway", "gateway-2"), ("auth", "auth-1"), ...]
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from fm_common.devstack import SERVICES
from fm_common.testing.ports import wait_for_port


class BalancerUnavailable(RuntimeError):
    """HAProxy is not installed (the message says how to get it)."""


def find_haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        raise BalancerUnavailable(
            "haproxy is not installed; `make test` installs it (scripts/bootstrap.sh --test, "
            "Debian package haproxy)"
        )
    return found


_LINE = re.compile(r"^FM (\S+) (\S+) (-?\d+) (\S+) (\S+) rid=(\S*)$")


class HAProxy:
    """The balancer of `stack` (a fm_common.devstack.Stack with `replicas`)."""

    def __init__(self, stack: Any, log: Path, config: Path | None = None) -> None:
        self.stack = stack
        self.log = log
        self.config = config or log.with_suffix(".cfg")
        self.exe = find_haproxy()
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def render(self) -> str:
        lines = [
            "global",
            "  log stdout format raw local0",
            "  maxconn 4096",
            "defaults",
            "  mode http",
            "  log global",
            '  log-format "FM %b %s %ST %HM %HP rid=%[capture.req.hdr(0)]"',
            "  timeout connect 2s",
            "  timeout client 300s",
            "  timeout server 300s",
            "  timeout http-request 60s",
            # A replica that refuses the connection (killed) is skipped: the request goes
            # to the other one; health checks take it out of the rotation within ~2 s.
            "  retries 3",
            "  option redispatch 1",
            "  retry-on conn-failure empty-response",
            "  default-server inter 1s fall 2 rise 1",
        ]
        for name in SERVICES:
            if name not in self.stack.ports:
                continue
            instances = [n for n in self.stack.instances(name) if n in self.stack.ports]
            if instances == [name]:
                continue  # one instance: no balancer in front of it
            lines += [
                f"frontend {name}",
                f"  bind 127.0.0.1:{self.stack.ports[name]}",
                "  capture request header X-Request-ID len 128",
                f"  default_backend {name}",
                f"backend {name}",
                "  balance roundrobin",
                "  option httpchk GET /health",
                "  http-response set-header X-Served-By %[srv_name]",
            ]
            lines += [
                f"  server {inst} 127.0.0.1:{self.stack.ports[inst]} check" for inst in instances
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> HAProxy:
        self.config.write_text(self.render())
        check = subprocess.run(
            [self.exe, "-c", "-q", "-f", str(self.config)], capture_output=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses its config: {check.stderr.decode()[-2000:]}")
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.exe, "-db", "-f", str(self.config)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fronts = [n for n in SERVICES if f"frontend {n}\n" in self.config.read_text()]
        for name in fronts:
            wait_for_port(self.stack.ports[name], timeout=timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # soft stop
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None

    def lines(self) -> list[tuple[str, str, int, str, str, str]]:
        """Every logged request: (service, instance, status, method, path, request id)."""
        if not self.log.exists():
            return []
        out = []
        for raw in self.log.read_text(errors="replace").splitlines():
            m = _LINE.match(raw.strip())
            if m:
                service, inst, status, method, path, rid = m.groups()
                out.append((service, inst, int(status), method, path, rid))
        return out

    def served(
        self, rid: str, service: str | None = None, *, wait: float = 2.0
    ) -> list[tuple[str, str]]:
        """The (service, instance) pairs that served request id `rid`, in log order
        (HAProxy logs a request when it ends: a short wait for the last line)."""
        deadline = time.monotonic() + wait
        while True:
            found = [
                (svc, inst)
                for svc, inst, _, _, _, r in self.lines()
                if r == rid and (service is None or svc == service)
            ]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
