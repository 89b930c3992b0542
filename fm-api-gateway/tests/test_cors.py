"""CORS as the real extension needs it: reflected origins with credentials, never `*`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from fm_common.testing.tokens import TokenIssuer

EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


@pytest.mark.parametrize("origin", [EXTENSION, "moz-extension://1234-5678"])
async def test_extension_preflight_is_answered(client: httpx.AsyncClient, origin: str):
    resp = await client.options(
        "/api/v1/cases",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == origin
    assert resp.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip() for h in resp.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-session-id", "idempotency-key"} <= allowed
    assert "x-request-id" in allowed
    assert "POST" in resp.headers["access-control-allow-methods"]


async def test_preflight_from_a_disallowed_origin_gets_no_cors_headers(
    client: httpx.AsyncClient,
):
    resp = await client.options(
        "/api/v1/cases",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert resp.status_code == 403
    assert "access-control-allow-origin" not in resp.headers


async def test_allowed_origin_is_reflected_on_answers_and_errors(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    ok = await client.get(
        "/api/v1/cases", headers={**token_issuer.headers("u-cors"), "Origin": EXTENSION}
    )
    assert ok.headers["access-control-allow-origin"] == EXTENSION
    assert ok.headers["access-control-allow-credentials"] == "true"
    exposed = {h.strip().lower() for h in ok.headers["access-control-expose-headers"].split(",")}
    assert {"location", "retry-after", "x-error-code", "x-request-id"} <= exposed
    assert {"x-expected-version", "x-actual-version", "x-title-source"} <= exposed
    # The extension must be able to read a 401 too.
    denied = await client.get("/api/v1/cases", headers={"Origin": EXTENSION})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == EXTENSION
    meta = await client.get("/v1/meta/capabilities", headers={"Origin": EXTENSION})
    assert meta.headers["access-control-allow-origin"] == EXTENSION


async def test_disallowed_origin_gets_no_allow_origin(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.get(
        "/api/v1/cases",
        headers={**token_issuer.headers("u-cors2"), "Origin": "https://evil.example"},
    )
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers
    assert all(v != "*" for v in resp.headers.values())
    assert resp.headers["vary"] == "Origin"


async def test_configured_origins_replace_the_default(start_gateway: Callable[..., str]):
    url = start_gateway(cors_origins="https://ops.example.com", public_url="https://fm.example.com")
    async with httpx.AsyncClient(base_url=url) as client:

        async def preflight(origin: str) -> httpx.Response:
            return await client.options(
                "/api/v1/cases",
                headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            )

        assert (await preflight("https://ops.example.com")).status_code == 204
        assert (await preflight("https://fm.example.com")).status_code == 204  # the dashboard
        assert (await preflight(EXTENSION)).status_code == 403
