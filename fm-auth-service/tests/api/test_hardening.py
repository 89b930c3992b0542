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


async def _roles(url: str, username: str, password: str) -> list[str] | int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        resp = await c.post("/api/v1/auth/login", json={"username": username, "password": password})
        if resp.status_code != 200:
            return resp.status_code
        return list(resp.json()["user"]["roles"])


async def test_registering_the_name_admin_gives_no_admin_role(client: httpx.AsyncClient):
    # Issue 16 item 7: whoever first registered `admin` on a new install became admin.
    resp = await client.post(
        "/api/v1/auth/register", json={"username": "admin", "password": PASSWORD}
    )
    assert resp.status_code == 201
    assert resp.json()["user"]["roles"] == ["user"]


async def test_the_first_admin_comes_from_the_bootstrap_settings(make_settings, start_auth):
    server = start_auth(
        make_settings(bootstrap_admin_username="root-ops", bootstrap_admin_password=PASSWORD)
    )
    assert await _roles(server.url, "root-ops", PASSWORD) == ["user", "admin"]
    # The name cannot be registered by anyone else afterwards.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        taken = await c.post(
            "/api/v1/auth/register", json={"username": "root-ops", "password": PASSWORD}
        )
    assert taken.status_code == 409


async def test_a_squatted_bootstrap_name_is_not_made_admin(make_settings, start_auth):
    first = start_auth(make_settings())
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as c:
        squat = await c.post(
            "/api/v1/auth/register",
            json={"username": "chief", "password": "squatters pass 42"},
        )
    assert squat.status_code == 201
    first.stop()
    second = start_auth(
        make_settings(bootstrap_admin_username="chief", bootstrap_admin_password=PASSWORD)
    )
    assert await _roles(second.url, "chief", "squatters pass 42") == ["user"]


async def test_registrations_per_address_are_limited(make_settings, start_auth):
    # Issue 16 item 8: 150 accounts were registered from one address in 65 s.
    server = start_auth(make_settings(registrations_per_address=3))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        codes = []
        for i in range(5):
            resp = await c.post(
                "/api/v1/auth/register", json={"username": f"bulk{i}", "password": PASSWORD}
            )
            codes.append(resp.status_code)
        assert codes == [201, 201, 201, 429, 429]
        assert resp.json()["code"] == "REGISTRATION_THROTTLED"
        assert int(resp.headers["retry-after"]) > 0
        # Existing accounts still log in.
        login = await c.post("/api/v1/auth/login", json={"username": "bulk0", "password": PASSWORD})
        assert login.status_code == 200
