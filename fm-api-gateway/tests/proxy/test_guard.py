"""Token checks, deny-list and rate limits at the gateway, before any service is reached."""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization

from fm_common.auth import deny_key, revoked_before_key
from fm_common.testing.tokens import TokenIssuer


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged_tokens(issuer: TokenIssuer) -> dict[str, str]:
    claims = issuer.claims("victim")
    now = int(time.time())
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_head = _b64({"alg": "HS256", "typ": "JWT", "kid": issuer.kid})
    hs_signing_input = f"{hs_head}.{_b64(claims)}".encode()
    valid = issuer.sign(claims)
    head, body, sig = valid.split(".")
    return {
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': issuer.kid})}.{_b64(claims)}.",
        "hs256_signed_with_public_key": f"{hs_head}.{_b64(claims)}."
        + _b64(hmac.new(public_pem, hs_signing_input, "sha256").digest()),
        "expired": issuer.sign({**claims, "exp": now - 60, "iat": now - 960}),
        "wrong_audience": issuer.sign({**claims, "aud": "another-api"}),
        "wrong_issuer": issuer.sign({**claims, "iss": "evil"}),
        "refresh_as_access": issuer.sign({**claims, "type": "refresh"}),
        "tampered_signature": f"{head}.{body}.{sig[:-6]}AAAAAA",
        "tampered_payload": f"{head}.{_b64({**claims, 'sub': 'attacker'})}.{sig}",
        "unknown_key": jwt.encode(
            claims, issuer.private_key, algorithm="EdDSA", headers={"kid": "not-ours"}
        ),
        "not_a_jwt": "garbage",
    }


ATTACKS = [
    "alg_none",
    "hs256_signed_with_public_key",
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "refresh_as_access",
    "tampered_signature",
    "tampered_payload",
    "unknown_key",
    "not_a_jwt",
]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_forged_or_unfit_token_is_401_and_never_forwarded(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, attack: str
):
    token = forged_tokens(token_issuer)[attack]
    resp = await client.get(
        "/api/v1/cases/c1", headers={"Authorization": f"Bearer {token}", "X-User-ID": "victim"}
    )
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["code"] in {"INVALID_TOKEN", "TOKEN_EXPIRED"}
    assert "service" not in body  # the echoing upstream never saw it


async def test_forged_user_header_without_token_is_401(client: httpx.AsyncClient):
    resp = await client.get(
        "/api/v1/cases", headers={"X-User-ID": "victim", "X-User-Roles": "admin"}
    )
    assert resp.status_code == 401
    assert resp.json()["code"] == "UNAUTHORIZED"
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_non_bearer_authorization_is_401(client: httpx.AsyncClient):
    resp = await client.get("/api/v1/cases", headers={"Authorization": "Basic dTpw"})
    assert resp.status_code == 401


async def test_token_cached_as_valid_is_refused_once_its_jti_is_denied(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis_url: str
):
    claims = token_issuer.claims("u-deny")
    headers = {"Authorization": f"Bearer {token_issuer.sign(claims)}"}
    assert (await client.get("/api/v1/cases", headers=headers)).status_code == 200
    r = aioredis.from_url(redis_url)
    await r.set(deny_key(claims["jti"]), "1", ex=900)
    await r.aclose()
    resp = await client.get("/api/v1/cases", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["code"] == "TOKEN_REVOKED"


async def test_cached_token_is_refused_after_its_users_account_wide_sign_out(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis_url: str
):
    claims = token_issuer.claims("u-watermark")
    headers = {"Authorization": f"Bearer {token_issuer.sign(claims)}"}
    assert (await client.get("/api/v1/cases", headers=headers)).status_code == 200
    r = aioredis.from_url(redis_url)
    await r.set(revoked_before_key("u-watermark"), str(int(claims["iat"]) + 1), ex=900)
    await r.aclose()
    resp = await client.get("/api/v1/cases", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["code"] == "TOKEN_REVOKED"


async def test_public_routes_need_no_token(client: httpx.AsyncClient):
    resp = await client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
    assert resp.status_code == 200
    assert resp.json()["service"] == "auth"
    assert "authorization" not in resp.json()["headers"]


async def test_login_with_a_stale_token_is_still_forwarded(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    expired = forged_tokens(token_issuer)["expired"]
    resp = await client.post(
        "/api/v1/auth/login", json={}, headers={"Authorization": f"Bearer {expired}"}
    )
    assert resp.status_code == 200


async def test_session_create_verifies_a_token_when_one_is_sent(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    anonymous = await client.post("/api/v1/sessions", json={"client_id": "c"})
    assert anonymous.status_code == 200
    bad = forged_tokens(token_issuer)["tampered_signature"]
    resp = await client.post(
        "/api/v1/sessions", json={}, headers={"Authorization": f"Bearer {bad}"}
    )
    assert resp.status_code == 401
    good = await client.post("/api/v1/sessions", json={}, headers=token_issuer.headers("u-s"))
    assert good.status_code == 200
    assert good.json()["headers"]["authorization"].startswith("Bearer ")


async def test_user_past_the_rate_limit_gets_429_with_retry_after(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer, redis_url: str
):
    # redis_url: a flushed Redis; an hour-long window: no boundary inside the test.
    url = start_gateway(rate_limit_per_window=3, rate_limit_window_seconds=3600)
    headers = token_issuer.headers("u-limited")
    async with httpx.AsyncClient(base_url=url) as client:
        statuses = [
            (await client.get("/api/v1/cases", headers=headers)).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        resp = await client.get("/api/v1/cases", headers=headers)
        assert resp.json()["code"] == "RATE_LIMITED"
        assert 1 <= int(resp.headers["retry-after"]) <= 3601
        # Another user has a budget of their own.
        other = await client.get("/api/v1/cases", headers=token_issuer.headers("u-other"))
        assert other.status_code == 200


async def test_public_routes_are_limited_per_address(
    start_gateway: Callable[..., str], redis_url: str
):
    url = start_gateway(public_rate_limit_per_window=2, rate_limit_window_seconds=3600)
    async with httpx.AsyncClient(base_url=url) as client:
        statuses = [
            (await client.post("/api/v1/auth/login", json={})).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_redis_down_is_503_with_retry_after(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer, dead_url: str
):
    port = dead_url.rsplit(":", 1)[1]
    url = start_gateway(redis_url=f"redis://127.0.0.1:{port}/0")
    async with httpx.AsyncClient(base_url=url) as client:
        resp = await client.get("/api/v1/cases", headers=token_issuer.headers("u-nored"))
    assert resp.status_code == 503
    assert resp.json()["code"] == "SERVICE_UNAVAILABLE"
    assert int(resp.headers["retry-after"]) >= 1


async def test_redis_that_stops_answering_is_503_not_a_hang(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer
):
    import asyncio

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts commands, never replies

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = start_gateway(redis_url=f"redis://127.0.0.1:{port}/0")
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            resp = await client.get("/api/v1/cases", headers=token_issuer.headers("u-hung"))
    finally:
        server.close()
    assert resp.status_code == 503
    assert resp.json()["code"] == "SERVICE_UNAVAILABLE"
    assert "retry-after" in resp.headers
