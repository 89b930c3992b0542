"""Login throttling, session binding at login, and dependencies that are down."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from fm_common.testing.ports import free_port

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_repeated_failures_for_one_account_are_429_with_retry_after(
    make_settings, start_auth
):
    server = start_auth(make_settings(login_max_failures_per_account=3))
    async with httpx.AsyncClient(base_url=server.url) as c:
        await c.post("/api/v1/auth/register", json={"username": "alice", "password": PASSWORD})
        for i in range(3):
            # Each from another address: the account limit is what trips.
            resp = await c.post(
                "/api/v1/auth/login",
                json={"username": "alice", "password": "wrong-password"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            assert resp.status_code == 401
        limited = await c.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.99"},
        )
        assert limited.status_code == 429
        assert limited.json()["code"] == "LOGIN_THROTTLED"
        assert 1 <= int(limited.headers["Retry-After"]) <= 900
        # Other accounts are not locked by it.
        await c.post("/api/v1/auth/register", json={"username": "bob", "password": PASSWORD})
        other = await c.post(
            "/api/v1/auth/login",
            json={"username": "bob", "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.99"},
        )
        assert other.status_code == 200


async def test_repeated_failures_from_one_address_are_429(make_settings, start_auth):
    server = start_auth(make_settings(login_max_failures_per_address=4))
    async with httpx.AsyncClient(base_url=server.url) as c:
        await c.post("/api/v1/auth/register", json={"username": "carol", "password": PASSWORD})
        addr = {"X-Forwarded-For": "203.0.113.5"}
        for i in range(4):
            resp = await c.post(
                "/api/v1/auth/login",
                json={"username": f"guess{i}", "password": "wrong-password"},
                headers=addr,
            )
            assert resp.status_code == 401
        limited = await c.post(
            "/api/v1/auth/login", json={"username": "carol", "password": PASSWORD}, headers=addr
        )
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        elsewhere = await c.post(
            "/api/v1/auth/login",
            json={"username": "carol", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.6"},
        )
        assert elsewhere.status_code == 200


async def test_success_resets_the_account_failure_count(make_settings, start_auth):
    server = start_auth(make_settings(login_max_failures_per_account=3))
    async with httpx.AsyncClient(base_url=server.url) as c:
        await c.post("/api/v1/auth/register", json={"username": "dave", "password": PASSWORD})
        for _ in range(2):
            await c.post("/api/v1/auth/login", json={"username": "dave", "password": "wrong-pw!"})
        ok = await c.post("/api/v1/auth/login", json={"username": "dave", "password": PASSWORD})
        assert ok.status_code == 200
        for _ in range(2):
            await c.post("/api/v1/auth/login", json={"username": "dave", "password": "wrong-pw!"})
        still = await c.post("/api/v1/auth/login", json={"username": "dave", "password": PASSWORD})
        assert still.status_code == 200


async def test_login_binds_the_anonymous_session_it_carries(
    client: httpx.AsyncClient, register, session_server
):
    await register("erin")
    async with httpx.AsyncClient(base_url=session_server.url) as sessions:
        anon = await sessions.post(
            "/api/v1/sessions",
            json={"client_id": "ext-1", "session_type": "troubleshooting", "timeout_minutes": 180},
        )
        assert anon.status_code == 201
        sid = anon.json()["session_id"]
        login = await client.post(
            "/api/v1/auth/login",
            json={"username": "erin", "password": PASSWORD},
            headers={"X-Session-Id": sid},
        )
        assert login.status_code == 200, login.text
        body = login.json()
        assert body["session_id"] == sid
        got = await sessions.get(f"/api/v1/sessions/{sid}", headers=bearer(body["access_token"]))
        assert got.status_code == 200
        assert got.json()["user_id"] == body["user"]["user_id"]
        assert got.json()["client_id"] == "ext-1"
        beat = await sessions.post(
            f"/api/v1/sessions/{sid}/heartbeat", headers=bearer(body["access_token"])
        )
        assert beat.status_code == 200


async def test_login_never_binds_another_users_session(
    client: httpx.AsyncClient, register, session_server
):
    frank = await register("frank")
    await register("gina")
    login = await client.post(
        "/api/v1/auth/login",
        json={"username": "gina", "password": PASSWORD},
        headers={"X-Session-Id": frank["session_id"]},
    )
    assert login.status_code == 200
    assert login.json()["session_id"] != frank["session_id"]
    async with httpx.AsyncClient(base_url=session_server.url) as sessions:
        franks = await sessions.get(
            f"/api/v1/sessions/{frank['session_id']}", headers=bearer(frank["access_token"])
        )
        assert franks.json()["user_id"] == frank["user"]["user_id"]
        stolen = await sessions.get(
            f"/api/v1/sessions/{frank['session_id']}",
            headers=bearer(login.json()["access_token"]),
        )
        assert stolen.status_code == 404


async def test_login_session_is_listed_by_the_session_service(
    client: httpx.AsyncClient, register, session_server
):
    body = await register("hank")
    async with httpx.AsyncClient(base_url=session_server.url) as sessions:
        listed = await sessions.get("/api/v1/sessions", headers=bearer(body["access_token"]))
    assert listed.status_code == 200
    assert [s["session_id"] for s in listed.json()["sessions"]] == [body["session_id"]]


async def test_session_service_down_makes_login_503_and_register_leave_no_user(
    make_settings, start_auth, session_server
):
    good = make_settings()
    down = make_settings(session_url=f"http://127.0.0.1:{free_port()}")
    server = start_auth(down)
    async with httpx.AsyncClient(base_url=server.url) as c:
        reg = await c.post("/api/v1/auth/register", json={"username": "ivan", "password": PASSWORD})
        assert reg.status_code == 503
        assert int(reg.headers["Retry-After"]) >= 1
        assert "session_id" not in reg.text
    server.stop()
    server = start_auth(good)
    async with httpx.AsyncClient(base_url=server.url) as c:
        # The failed registration left nothing behind: the name is still free.
        reg = await c.post("/api/v1/auth/register", json={"username": "ivan", "password": PASSWORD})
        assert reg.status_code == 201
    server.stop()
    server = start_auth(down)
    async with httpx.AsyncClient(base_url=server.url) as c:
        login = await c.post("/api/v1/auth/login", json={"username": "ivan", "password": PASSWORD})
        assert login.status_code == 503
        assert login.headers["Retry-After"]
        assert login.json()["code"] == "SESSION_UNAVAILABLE"


async def test_redis_down_is_503_not_500(make_settings, start_auth):
    server = start_auth(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with httpx.AsyncClient(base_url=server.url) as c:
        resp = await c.post("/api/v1/auth/login", json={"username": "judy", "password": PASSWORD})
    assert resp.status_code == 503
    assert resp.headers["Retry-After"]
    assert "Traceback" not in resp.text


async def test_login_failure_counters_are_not_keyed_by_raw_names(
    client: httpx.AsyncClient, redis: aioredis.Redis
):
    await client.post("/api/v1/auth/login", json={"username": "secret-name", "password": "x"})
    keys = [k async for k in redis.scan_iter("fm:auth:login-failures:*")]
    assert keys
    assert not any("secret-name" in k for k in keys)


async def test_garbage_session_header_still_logs_in_with_a_new_session(
    client: httpx.AsyncClient, register
):
    await register("kate")
    resp = await client.post(
        "/api/v1/auth/login",
        json={"username": "kate", "password": PASSWORD},
        headers={"X-Session-Id": "x" * 500},
    )
    assert resp.status_code == 200
    assert resp.json()["session_id"] != "x" * 500


async def test_logout_with_the_session_service_down_is_503_and_revokes_nothing(
    client: httpx.AsyncClient, register, session_server
):
    body = await register("liam")
    session_server.stop()
    resp = await client.post("/api/v1/auth/logout?all=true", headers=bearer(body["access_token"]))
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) >= 1
    # Nothing was revoked, so the client can simply retry once the service is back.
    me = await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200


async def test_register_binds_the_anonymous_session_it_carries(
    client: httpx.AsyncClient, session_server
):
    async with httpx.AsyncClient(base_url=session_server.url) as sessions:
        anon = (await sessions.post("/api/v1/sessions", json={"client_id": "ext-2"})).json()
        reg = await client.post(
            "/api/v1/auth/register",
            json={"username": "mona", "password": PASSWORD},
            headers={"X-Session-Id": anon["session_id"]},
        )
        assert reg.status_code == 201
        assert reg.json()["session_id"] == anon["session_id"]
        got = await sessions.get(
            f"/api/v1/sessions/{anon['session_id']}", headers=bearer(reg.json()["access_token"])
        )
        assert got.json()["user_id"] == reg.json()["user"]["user_id"]


async def test_a_second_logout_with_the_same_token_is_401(client: httpx.AsyncClient, register):
    body = await register("nina")
    first = await client.post("/api/v1/auth/logout", headers=bearer(body["access_token"]))
    assert first.status_code == 200
    second = await client.post("/api/v1/auth/logout", headers=bearer(body["access_token"]))
    assert second.status_code == 401
    assert second.json()["code"] == "TOKEN_REVOKED"
