"""The front door's own failure handling (in-process, through ASGITransport)."""

from __future__ import annotations

import httpx
import pytest
from gateway_testkit import gateway_settings

from fm_common.testing.tokens import TokenIssuer
from gateway.main import create_app
from gateway.proxy import routing


async def test_a_bug_on_the_proxy_path_is_a_500_in_the_error_model(
    upstreams: dict,
    redis_url: str,
    token_issuer: TokenIssuer,
    dead_url: str,
    monkeypatch: pytest.MonkeyPatch,
):
    def broken(method: str, path: str) -> bool:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(routing, "is_upload", broken)
    app = create_app(gateway_settings(upstreams, redis_url, token_issuer, dead_url))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            resp = await client.get("/api/v1/cases", headers=token_issuer.headers("u-bug"))
    assert resp.status_code == 500
    assert resp.json() == {"detail": "Internal server error.", "code": "INTERNAL_ERROR"}
    assert "secret" not in resp.text
    assert resp.headers["x-request-id"]
