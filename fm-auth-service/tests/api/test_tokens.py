"""Refresh rotation and reuse detection, logout, JWKS and the signing key."""

from __future__ import annotations

import asyncio
import os
import stat
import time

import httpx
import jwt
import redis.asyncio as aioredis
from jwt import PyJWK

from fm_common.auth import deny_key

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(client: httpx.AsyncClient, username: str) -> dict:
    resp = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_refresh_rotates_both_tokens(client: httpx.AsyncClient, register):
    first = await register("alice")
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sid"] == first["session_id"]
    me = await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    # The rotated-out token is spent; the new one keeps working.
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status_code == 200


async def test_refresh_token_reuse_revokes_the_whole_family(client: httpx.AsyncClient, register):
    first = await register("bob")
    rotated = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "REFRESH_TOKEN_REUSED"
    # The token the rotation produced stops working too, as do the family's access tokens.
    stolen = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert stolen.status_code == 401
    for token in (first["access_token"], rotated["access_token"]):
        me = await client.get("/api/v1/auth/me", headers=bearer(token))
        assert me.status_code == 401
        assert me.json()["code"] == "TOKEN_REVOKED"


async def test_reuse_in_one_login_leaves_other_logins_alone(client: httpx.AsyncClient, register):
    first = await register("carol")
    other = await _login(client, "carol")
    await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    me = await client.get("/api/v1/auth/me", headers=bearer(other["access_token"]))
    assert me.status_code == 200
    ok = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert ok.status_code == 200


async def test_access_token_is_not_a_refresh_token(client: httpx.AsyncClient, register):
    body = await register("dave")
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": body["access_token"]})
    assert resp.status_code == 401
    garbage = await client.post("/api/v1/auth/refresh", json={"refresh_token": "garbage"})
    assert garbage.status_code == 401
    assert garbage.json()["code"] == "INVALID_REFRESH_TOKEN"


async def test_logout_deny_lists_the_access_token(
    client: httpx.AsyncClient, register, redis: aioredis.Redis
):
    body = await register("erin")
    token = body["access_token"]
    resp = await client.post("/api/v1/auth/logout", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["message"]
    assert out["revoked_tokens"] == 2  # the access token and the login's refresh family
    assert out["all_sessions_ended"] is True
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    ttl = await redis.ttl(deny_key(jti))
    assert 800 < ttl <= 910
    me = await client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 401
    assert me.json()["code"] == "TOKEN_REVOKED"
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refresh.status_code == 401
    # The session ended with the login.
    assert await redis.exists(f"fm:session:{body['session_id']}") == 0


async def test_logout_of_one_session_keeps_the_others(client: httpx.AsyncClient, register):
    first = await register("frank")
    second = await _login(client, "frank")
    resp = await client.post(
        "/api/v1/auth/logout?scope=session", headers=bearer(first["access_token"])
    )
    assert resp.json()["all_sessions_ended"] is False  # the second one remains
    me = await client.get("/api/v1/auth/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200
    last = await client.post(
        "/api/v1/auth/logout?scope=session", headers=bearer(second["access_token"])
    )
    assert last.json()["all_sessions_ended"] is True


async def test_a_plain_logout_signs_out_every_client_of_the_account(
    client: httpx.AsyncClient, register, redis: aioredis.Redis
):
    """The extension and the dashboard hold separate token chains: a sign-out in one
    refuses the other's access and refresh tokens too (API.md "sign out")."""
    extension = await register("fiona")
    dashboard = await _login(client, "fiona")
    resp = await client.post("/api/v1/auth/logout", headers=bearer(extension["access_token"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["all_sessions_ended"] is True
    me = await client.get("/api/v1/auth/me", headers=bearer(dashboard["access_token"]))
    assert me.status_code == 401
    assert me.json()["code"] == "TOKEN_REVOKED"
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": dashboard["refresh_token"]}
    )
    assert refresh.status_code == 401
    user_id = extension["user"]["user_id"]
    assert await redis.get(f"fm:auth:revoked-before:{user_id}") is not None
    # Signing in again afterwards works.
    again = await _login(client, "fiona")
    me = await client.get("/api/v1/auth/me", headers=bearer(again["access_token"]))
    assert me.status_code == 200


async def test_the_watermark_refuses_tokens_the_registry_no_longer_knows(
    client: httpx.AsyncClient, register, redis: aioredis.Redis
):
    old = await register("gemma")
    user_id = old["user"]["user_id"]
    # A token older than the sign-out second, whose jti and family were forgotten.
    await asyncio.sleep(1.05 - time.time() % 1)
    await redis.delete(f"fm:auth:user:{user_id}:access", f"fm:auth:user:{user_id}:families")
    current = await _login(client, "gemma")
    resp = await client.post("/api/v1/auth/logout", headers=bearer(current["access_token"]))
    assert resp.status_code == 200
    assert resp.json()["revoked_tokens"] == 2  # only what the registry knew, by id
    me = await client.get("/api/v1/auth/me", headers=bearer(old["access_token"]))
    assert me.status_code == 401
    assert me.json()["code"] == "TOKEN_REVOKED"
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
    )
    assert refresh.status_code == 401
    assert refresh.json()["code"] == "REFRESH_TOKEN_REVOKED"


async def test_logout_all_ends_every_session_and_token(
    client: httpx.AsyncClient, register, redis: aioredis.Redis
):
    first = await register("gina")
    second = await _login(client, "gina")
    third = await _login(client, "gina")
    refreshed = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    ).json()
    other_user = await register("hank")
    resp = await client.post("/api/v1/auth/logout?all=true", headers=bearer(first["access_token"]))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["all_sessions_ended"] is True
    assert out["revoked_tokens"] == 4 + 3  # four access tokens, three refresh families
    for token in (first["access_token"], second["access_token"], refreshed["access_token"]):
        assert (await client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 401
    for rt in (second["refresh_token"], refreshed["refresh_token"]):
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": rt})
        assert r.status_code == 401
    for login in (first, second, third):
        assert await redis.exists(f"fm:session:{login['session_id']}") == 0
    # Another user is untouched.
    assert await redis.exists(f"fm:session:{other_user['session_id']}") == 1
    me = await client.get("/api/v1/auth/me", headers=bearer(other_user["access_token"]))
    assert me.status_code == 200


async def test_logout_needs_a_token(client: httpx.AsyncClient):
    resp = await client.post("/api/v1/auth/logout")
    assert resp.status_code == 401


async def test_jwks_verifies_the_issued_token(client: httpx.AsyncClient, register):
    body = await register("ivan")
    jwks = (await client.get("/api/v1/auth/.well-known/jwks.json")).json()
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["alg"] == "EdDSA"
    assert "d" not in jwk  # never the private part
    header = jwt.get_unverified_header(body["access_token"])
    assert header["kid"] == jwk["kid"]
    claims = jwt.decode(
        body["access_token"],
        key=PyJWK.from_dict(jwk),
        algorithms=["EdDSA"],
        audience="faultmaven-api",
        issuer="faultmaven",
    )
    assert claims["sub"] == body["user"]["user_id"]
    assert claims["username"] == "ivan"
    assert claims["roles"] == ["user"]


async def test_signing_key_is_private_and_survives_a_restart(
    make_settings, start_auth, data_dir, auth_port
):
    settings = make_settings()
    server = start_auth(settings)
    key_path = data_dir / "auth" / "signing_key.pem"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    async with httpx.AsyncClient(base_url=server.url) as c:
        kid = (await c.get("/api/v1/auth/.well-known/jwks.json")).json()["keys"][0]["kid"]
        reg = await c.post("/api/v1/auth/register", json={"username": "judy", "password": PASSWORD})
        token = reg.json()["access_token"]
    server.stop()
    await asyncio.sleep(0.1)
    again = start_auth(settings)
    async with httpx.AsyncClient(base_url=again.url) as c:
        jwks = (await c.get("/api/v1/auth/.well-known/jwks.json")).json()
        assert jwks["keys"][0]["kid"] == kid
        # Users and tokens survive the restart (SQLite file, same key).
        me = await c.get("/api/v1/auth/me", headers=bearer(token))
        assert me.status_code == 200
        assert me.json()["username"] == "judy"


async def test_every_key_left_in_redis_has_an_expiry(
    client: httpx.AsyncClient, register, redis: aioredis.Redis
):
    first = await register("kate")
    second = await _login(client, "kate")
    rotated = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    await client.post("/api/v1/auth/logout?scope=session", headers=bearer(second["access_token"]))
    await client.post("/api/v1/auth/login", json={"username": "kate", "password": "wrong-pw!"})
    assert rotated["access_token"]
    keys = [k async for k in redis.scan_iter("fm:*")]
    assert any(k.startswith("fm:auth:family:") for k in keys)
    assert any(k.startswith("fm:session:") for k in keys)
    forever = [k for k in keys if await redis.ttl(k) < 0]
    assert forever == []


async def test_key_rotation_keeps_tokens_of_the_previous_key_valid(
    make_settings, start_auth, data_dir
):
    server = start_auth(make_settings())
    async with httpx.AsyncClient(base_url=server.url) as c:
        reg = (
            await c.post("/api/v1/auth/register", json={"username": "rot", "password": PASSWORD})
        ).json()
    server.stop()
    old_kid = jwt.get_unverified_header(reg["access_token"])["kid"]
    retired = data_dir / "retired.pem"
    (data_dir / "auth" / "signing_key.pem").rename(retired)

    # A new key, with the retired one still honoured.
    server = start_auth(make_settings(previous_key_paths=[str(retired)]))
    async with httpx.AsyncClient(base_url=server.url) as c:
        kids = [
            k["kid"] for k in (await c.get("/api/v1/auth/.well-known/jwks.json")).json()["keys"]
        ]
        assert len(kids) == 2
        assert kids[1] == old_kid
        assert kids[0] != old_kid
        me = await c.get("/api/v1/auth/me", headers=bearer(reg["access_token"]))
        assert me.status_code == 200
        rotated = await c.post("/api/v1/auth/refresh", json={"refresh_token": reg["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        assert jwt.get_unverified_header(rotated.json()["access_token"])["kid"] == kids[0]
    server.stop()

    # Once the retired key is dropped, its tokens are refused.
    server = start_auth(make_settings())
    async with httpx.AsyncClient(base_url=server.url) as c:
        me = await c.get("/api/v1/auth/me", headers=bearer(reg["access_token"]))
        assert me.status_code == 401
        assert len((await c.get("/api/v1/auth/.well-known/jwks.json")).json()["keys"]) == 1
