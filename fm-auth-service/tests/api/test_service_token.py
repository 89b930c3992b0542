"""The internal service-token exchange the worker uses (DESIGN.md "Identity")."""

from __future__ import annotations

import httpx
import jwt
import pytest

from fm_common.clients.auth import AuthClient
from fm_common.clients.base import create_http_client
from fm_common.errors import Unauthorized

SECRET = "test-service-secret-0123456789"


async def test_service_token_acts_on_behalf_of_the_user(client: httpx.AsyncClient, register):
    user = (await register("alice"))["user"]
    resp = await client.post(
        "/internal/v1/service-token",
        json={"client_id": "worker", "client_secret": SECRET, "on_behalf_of": user["user_id"]},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["expires_in"] == 300
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "service:worker"
    assert claims["roles"] == ["service"]
    assert claims["on_behalf_of"] == user["user_id"]
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 300
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["user_id"] == user["user_id"]


async def test_each_calling_service_gets_tokens_under_its_own_name(
    client: httpx.AsyncClient, register
):
    # The callers of /internal routes (ADR 0135); the gateway, case and session services
    # are no clients.
    user = (await register("dora"))["user"]
    for name in ("worker", "agent", "evidence", "knowledge"):
        body = {"client_id": name, "client_secret": SECRET, "on_behalf_of": user["user_id"]}
        resp = await client.post("/internal/v1/service-token", json=body)
        assert resp.status_code == 200, (name, resp.text)
        claims = jwt.decode(resp.json()["access_token"], options={"verify_signature": False})
        assert claims["sub"] == f"service:{name}"
    for name in ("gateway", "case", "session"):
        body = {"client_id": name, "client_secret": SECRET, "on_behalf_of": user["user_id"]}
        resp = await client.post("/internal/v1/service-token", json=body)
        assert resp.status_code == 401, name


async def test_wrong_service_secret_is_401(client: httpx.AsyncClient, register):
    user = (await register("bob"))["user"]
    for body in (
        {"client_id": "worker", "client_secret": "wrong", "on_behalf_of": user["user_id"]},
        {"client_id": "someone", "client_secret": SECRET, "on_behalf_of": user["user_id"]},
    ):
        resp = await client.post("/internal/v1/service-token", json=body)
        assert resp.status_code == 401
        assert resp.json()["code"] == "INVALID_CLIENT"


async def test_service_tokens_are_refused_when_no_secret_is_set(make_settings, start_auth):
    server = start_auth(make_settings(service_client_secret=None))
    async with httpx.AsyncClient(base_url=server.url) as c:
        resp = await c.post(
            "/internal/v1/service-token",
            json={"client_id": "worker", "client_secret": "anything", "on_behalf_of": "u"},
        )
    assert resp.status_code == 401


async def test_service_token_ttl_over_300_is_422_and_unknown_user_404(client: httpx.AsyncClient):
    too_long = await client.post(
        "/internal/v1/service-token",
        json={
            "client_id": "worker",
            "client_secret": SECRET,
            "on_behalf_of": "u",
            "ttl_seconds": 301,
        },
    )
    assert too_long.status_code == 422
    unknown = await client.post(
        "/internal/v1/service-token",
        json={"client_id": "worker", "client_secret": SECRET, "on_behalf_of": "no-such-user"},
    )
    assert unknown.status_code == 404


async def test_auth_client_caches_service_tokens(client: httpx.AsyncClient, register):
    user = (await register("carol"))["user"]
    http = create_http_client()
    try:
        auth = AuthClient(str(client.base_url), http, client_secret=SECRET)
        first = await auth.service_token(user["user_id"])
        second = await auth.service_token(user["user_id"])
        assert first == second
        info = await auth.me(first)
        assert info.user_id == user["user_id"]
        wrong = AuthClient(str(client.base_url), http, client_secret="wrong")
        with pytest.raises(Unauthorized):
            await wrong.service_token(user["user_id"])
    finally:
        await http.aclose()
