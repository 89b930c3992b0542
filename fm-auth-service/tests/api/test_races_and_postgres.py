"""Concurrent registrations of one name, and the service on a real PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx

PASSWORD = "correct horse battery"


async def _race(base_url: str, n: int = 6) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:
        responses = await asyncio.gather(
            *(
                c.post(
                    "/api/v1/auth/register",
                    json={"username": "racer" if i % 2 else "RACER", "password": PASSWORD},
                )
                for i in range(n)
            )
        )
    return sorted(r.status_code for r in responses)


async def test_concurrent_registrations_of_one_name_give_one_201_and_409s_on_sqlite(
    client: httpx.AsyncClient,
):
    codes = await _race(str(client.base_url))
    assert codes == [201] + [409] * 5


async def test_concurrent_registrations_of_one_name_on_postgresql(
    make_settings, start_auth, postgres_url
):
    server = start_auth(make_settings(database_url=postgres_url))
    codes = await _race(server.url)
    assert codes == [201] + [409] * 5


async def test_register_login_me_on_postgresql(make_settings, start_auth, postgres_url):
    server = start_auth(make_settings(database_url=postgres_url))
    async with httpx.AsyncClient(base_url=server.url) as c:
        reg = await c.post(
            "/api/v1/auth/register",
            json={"username": "pgUser", "password": PASSWORD, "email": "pg@example.com"},
        )
        assert reg.status_code == 201, reg.text
        dup = await c.post(
            "/api/v1/auth/register",
            json={"username": "other", "password": PASSWORD, "email": "PG@example.com"},
        )
        assert dup.status_code == 409
        login = await c.post(
            "/api/v1/auth/login", json={"username": "pguser", "password": PASSWORD}
        )
        assert login.status_code == 200
        me = await c.get(
            "/api/v1/auth/me",
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
        assert me.json()["username"] == "pgUser"
        assert me.json()["created_at"].endswith("Z")
