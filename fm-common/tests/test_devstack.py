"""The process supervisor of `make run` and the system tests: ports and health."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fm_common.devstack import Stack, free_port_set
from fm_common.testing.servers import AppServer


def test_the_ports_of_a_stack_are_distinct() -> None:
    for _ in range(50):
        ports = Stack.free_ports()
        assert len(set(ports.values())) == len(ports)
    assert len(set(free_port_set(200))) == 200


def _health_app(service: str):  # type: ignore[no-untyped-def]
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "service": service}

    return app


def test_a_port_answered_by_another_service_is_not_taken_for_healthy(tmp_path: Path) -> None:
    server = AppServer(_health_app("knowledge")).start()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stack = Stack(data_dir=tmp_path, ports={"evidence": server.port})
        stack.procs["evidence"] = sleeper  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="answered by the knowledge service"):
            stack.wait_healthy(timeout=10)
        # Its own service answering is healthy.
        stack.ports["knowledge"] = server.port
        stack.procs = {"knowledge": sleeper}  # type: ignore[dict-item]
        stack.wait_healthy(timeout=10)
    finally:
        sleeper.kill()
        sleeper.wait()
        server.stop()
