"""Fixtures of the agent's tests: the fake LLM provider, the HTTP stand-ins of the case,
knowledge and evidence services, and the app wired to both (real Redis, real HTTP)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_service.config import Settings
from fm_common.testing.fake_llm import FakeLLMServer
from fm_common.testing.tokens import SERVICE_CLIENT_SECRET

_spec = importlib.util.spec_from_file_location(
    "agent_standins", Path(__file__).parent / "standins.py"
)
assert _spec
assert _spec.loader
standins_mod = importlib.util.module_from_spec(_spec)
sys.modules["agent_standins"] = standins_mod
_spec.loader.exec_module(standins_mod)
Standins = standins_mod.Standins


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_llm_server: FakeLLMServer) -> FakeLLMServer:
    fake_llm_server.reset()
    return fake_llm_server


@pytest.fixture(scope="session")
def standins_server() -> Iterator[Any]:
    server = Standins().start()
    yield server
    server.stop()


@pytest.fixture
def standins(standins_server: Any) -> Any:
    standins_server.reset()
    return standins_server


@pytest.fixture
def make_settings(redis_url: str, token_issuer: Any, standins: Any, data_dir: Path) -> Any:
    def make(providers: list[dict[str, Any]] | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "redis_url": redis_url,
            "jwks_url": token_issuer.jwks_url,
            # The test issuer mints the service tokens the agent's /internal calls need.
            "auth_url": token_issuer.url,
            "service_client_secret": SERVICE_CLIENT_SECRET,
            "case_url": standins.url,
            "knowledge_url": standins.url,
            "evidence_url": standins.url,
            "data_dir": data_dir,
            "providers": providers or [],
            "turn_deadline_seconds": 10.0,
            "log_format": "console",
            "redaction_key": "test-redaction-key-0123456789abcdef",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def redactor(redis_url: str) -> Any:
    """A redactor for a fresh case on the real Redis (what every provider call needs)."""
    import redis.asyncio as aioredis

    from agent_service.domain.privacy.redaction import CaseRedactor, MapCipher

    client = aioredis.from_url(redis_url, decode_responses=True)
    yield CaseRedactor(client, f"case-{uuid.uuid4().hex}", MapCipher("test-key"))
    await client.aclose()


@pytest.fixture
def user_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def auth(token_issuer: Any, user_id: str) -> dict[str, str]:
    return token_issuer.headers(user_id)
