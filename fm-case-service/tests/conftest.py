from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from case_service.config import Settings
from case_service.main import create_app
from fm_common.testing.ports import free_port
from fm_common.testing.reference import assert_matches
from fm_common.testing.tokens import TokenIssuer


@pytest.fixture
def settings(
    sqlite_url: str, redis_url: str, token_issuer: TokenIssuer, data_dir: Path
) -> Settings:
    return Settings(
        database_url=sqlite_url,
        redis_url=redis_url,
        jwks_url=token_issuer.jwks_url,
        data_dir=data_dir,
        outbox_sweep_seconds=0,
        log_format="console",
        # Nothing listens here: the evidence service is "down" unless a test says otherwise.
        evidence_url=f"http://127.0.0.1:{free_port()}",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://case") as c:
        yield c


@pytest.fixture
def alice(token_issuer: TokenIssuer) -> dict[str, str]:
    return token_issuer.headers(f"alice-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def bob(token_issuer: TokenIssuer) -> dict[str, str]:
    return token_issuer.headers(f"bob-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def svc(token_issuer: TokenIssuer) -> Callable[[dict[str, str]], dict[str, str]]:
    """The agent's service token acting for the user behind `headers`: what the internal
    routes take (a user's own token is 403 SERVICE_ONLY, ADR 0135)."""

    def as_service(headers: dict[str, str]) -> dict[str, str]:
        token = headers["Authorization"].removeprefix("Bearer ")
        user = jwt.decode(token, options={"verify_signature": False})["sub"]
        return token_issuer.service_headers(user, client_id="agent")

    return as_service


SchemaCheck = Callable[[str, Any], None]


@pytest.fixture
def reference() -> SchemaCheck:
    """`reference("CaseDetail", body)` validates against the reference OpenAPI schema."""
    return assert_matches


@pytest.fixture
def make_case(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict]]:
    async def _make(headers: dict[str, str], **body: object) -> dict:
        return await create_case(client, headers, **body)

    return _make


async def create_case(client: httpx.AsyncClient, headers: dict[str, str], **body: object) -> dict:
    """A case of the user behind `headers` (plain factory: POST /api/v1/cases)."""
    resp = await client.post("/api/v1/cases", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture
def turn() -> Callable[..., dict]:
    return turn_body


def turn_body(key: str | None = None, **overrides: object) -> dict:
    body: dict = {
        "turn_key": key or f"turn-{uuid.uuid4().hex}",
        "user_message": {"content": "The API returns 502 since 10:00"},
        "assistant_message": {
            "content": "Let us check the upstream.",
            "metadata": {"provider": "fake"},
        },
    }
    body.update(overrides)
    return body
