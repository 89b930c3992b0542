from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from fm_common.app import create_service_app
from fm_common.auth import CurrentPrincipal
from fm_common.errors import Conflict
from fm_common.settings import BaseServiceSettings
from fm_common.testing.tokens import TokenIssuer


class DemoSettings(BaseServiceSettings):
    service_name: ClassVar[str] = "demo"


def build_demo_app(redis_url: str, issuer: TokenIssuer) -> FastAPI:
    settings = DemoSettings(redis_url=redis_url, jwks_url=issuer.jwks_url)
    app = create_service_app(settings, title="demo")
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user_id": principal.user_id}

    @router.get("/conflict")
    async def conflict() -> None:
        raise Conflict("It clashes.", code="DEMO_CONFLICT")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    app.include_router(router)
    return app


@pytest.fixture
async def demo_client(
    redis_url: str, token_issuer: TokenIssuer
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_demo_app(redis_url, token_issuer)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            yield client
