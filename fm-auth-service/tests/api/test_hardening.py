"""Issue 16 items 7, 8 and 10 at the auth service: token answers are never cached, the
first admin comes from an explicit setting, registrations are limited per address."""

from __future__ import annotations

import httpx

PASSWORD = "correct horse battery"


async def test_token_answers_are_no_store(client: httpx.AsyncClient):
    reg = await client.post(
        "/api/v1/auth/register", json={"username": "nostore", "password": PASSWORD}
    )
    assert reg.status_code == 201
    assert reg.headers["cache-control"] == "no-store"
    login = await client.post(
        "/api/v1/auth/login", json={"username": "nostore", "password": PASSWORD}
    )
    assert login.headers["cache-control"] == "no-store"
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert refreshed.headers["cache-control"] == "no-store"
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.headers["cache-control"] == "no-store"
    # The public keys stay cacheable.
    jwks = await client.get("/api/v1/auth/.well-known/jwks.json")
    assert jwks.headers.get("cache-control") != "no-store"
