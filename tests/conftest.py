"""Whole-system fixtures: the real processes of faultmaven-deploy/Procfile, as `make run`
starts them, on free ports, with the fake LLM provider wired into the agent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fm_common.devstack import Stack
from fm_common.testing.shared import shared_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real runbooks); tests that need it skip where it is absent."""
    return shared_path("data")


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[object | None]:
    try:
        from fm_common.testing.fake_llm import FakeLLMServer
    except ImportError:
        yield None
        return
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def system_stack(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: object | None
) -> Iterator[Stack]:
    """Every installed Procfile process on free ports; the gateway at `stack.gateway_url`."""
    root = tmp_path_factory.mktemp("system")
    extra_env = {
        "FM_LOG_FORMAT": "json",
        "FM_WORKER_CONCURRENCY": "1",
        # The first admin by the bootstrap settings (never by registering a name).
        "FM_AUTH_BOOTSTRAP_ADMIN_USERNAME": "admin",
        "FM_AUTH_BOOTSTRAP_ADMIN_PASSWORD": "correct horse battery",
        "HF_HUB_OFFLINE": "1",
        # Every system test comes from 127.0.0.1: keep the per-address limit out of the way.
        "FM_GATEWAY_PUBLIC_RATE_LIMIT_PER_WINDOW": "100000",
        "FM_GATEWAY_RATE_LIMIT_PER_WINDOW": "100000",
        "FM_AUTH_REGISTRATIONS_PER_ADDRESS": "100000",
    }
    if fake_llm is not None:
        extra_env["FM_AGENT_PROVIDERS"] = json.dumps(
            [
                {
                    "name": "fake-openai",
                    "kind": "openai_compatible",
                    "model": "fake-model",
                    "api_key": "test-key",
                    "base_url": f"{fake_llm.base_url}/v1",  # type: ignore[attr-defined]
                }
            ]
        )
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        log_dir=root / "logs",
        extra_env=extra_env,
    )
    stack.fake_llm = fake_llm  # type: ignore[attr-defined]
    try:
        stack.start(timeout=float(os.environ.get("FM_SYSTEM_START_TIMEOUT", "180")))
    except Exception:
        stack.stop()
        _dump_logs(root / "logs")
        raise
    yield stack
    stack.stop()


def _dump_logs(log_dir: Path) -> None:
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-30:]
        print(f"--- {log.name} (last lines)\n" + "\n".join(tail))  # noqa: T201
