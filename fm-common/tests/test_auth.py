"""Token attacks against a service reached directly: every one is a 401."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from fm_common.auth import (
    CurrentPrincipal,
    ServicePrincipal,
    TokenVerifier,
    deny_key,
    revoked_before_key,
)
from fm_common.clients.auth import AuthClient
from fm_common.clients.base import ServiceClient, create_http_client
from fm_common.errors import install_error_handlers
from fm_common.testing.servers import AppServer
from fm_common.testing.tokens import SERVICE_CLIENT_SECRET, TokenIssuer


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_valid_token_is_accepted(demo_client: httpx.AsyncClient, token_issuer: TokenIssuer):
    resp = await demo_client.get("/whoami", headers=token_issuer.headers("u-1"))
    assert resp.status_code == 200
    assert resp.json() == {"user_id": "u-1"}


async def test_missing_token_is_401_with_error_model(demo_client: httpx.AsyncClient):
    resp = await demo_client.get("/whoami", headers={"X-User-ID": "u-1"})
    assert resp.status_code == 401
    assert resp.json()["code"] == "UNAUTHORIZED"
    assert resp.headers["x-error-code"] == "UNAUTHORIZED"


def _attacks(issuer: TokenIssuer) -> dict[str, str]:
    claims = issuer.claims("victim")
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    valid = issuer.sign(claims)
    head, body, sig = valid.split(".")
    tampered_body = _b64({**claims, "sub": "attacker"})
    return {
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': issuer.kid})}.{_b64(claims)}.",
        "hs256_with_public_key": f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid})}."
        f"{_b64(claims)}."
        + base64.urlsafe_b64encode(
            __import__("hmac")
            .new(public_pem, f"{_b64({'alg': 'HS256'})}.{_b64(claims)}".encode(), "sha256")
            .digest()
        )
        .rstrip(b"=")
        .decode(),
        "expired": issuer.sign(
            {**claims, "exp": int(time.time()) - 60, "iat": int(time.time()) - 960}
        ),
        "wrong_audience": issuer.sign({**claims, "aud": "someone-else"}),
        "wrong_issuer": issuer.sign({**claims, "iss": "evil"}),
        "refresh_as_access": issuer.sign({**claims, "type": "refresh"}),
        "tampered_signature": f"{head}.{body}.{sig[:-4]}AAAA",
        "tampered_payload": f"{head}.{tampered_body}.{sig}",
        "unknown_kid": jwt.encode(
            claims, issuer.private_key, algorithm="EdDSA", headers={"kid": "nope"}
        ),
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize(
    "attack",
    [
        "alg_none",
        "hs256_with_public_key",
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "refresh_as_access",
        "tampered_signature",
        "tampered_payload",
        "unknown_kid",
        "garbage",
    ],
)
async def test_token_attack_is_401(
    demo_client: httpx.AsyncClient, token_issuer: TokenIssuer, attack: str
):
    token = _attacks(token_issuer)[attack]
    resp = await demo_client.get(
        "/whoami", headers={"Authorization": f"Bearer {token}", "X-User-ID": "victim"}
    )
    assert resp.status_code == 401, resp.text
    assert resp.json()["code"] in {"INVALID_TOKEN", "TOKEN_EXPIRED"}


async def test_denylisted_jti_is_401(
    demo_client: httpx.AsyncClient, token_issuer: TokenIssuer, redis_url: str
):
    claims = token_issuer.claims("u-2")
    token = token_issuer.sign(claims)
    assert (
        await demo_client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200
    r = aioredis.from_url(redis_url)
    await r.set(deny_key(claims["jti"]), "1", ex=60)
    await r.aclose()
    resp = await demo_client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert resp.json()["code"] == "TOKEN_REVOKED"


async def test_a_token_issued_before_the_users_sign_out_watermark_is_401(
    demo_client: httpx.AsyncClient, token_issuer: TokenIssuer, redis_url: str
):
    old = token_issuer.claims("u-3")
    old_token = token_issuer.sign(old)
    other_user = token_issuer.sign(token_issuer.claims("u-4"))
    r = aioredis.from_url(redis_url)
    await r.set(revoked_before_key("u-3"), str(int(old["iat"]) + 1), ex=60)
    resp = await demo_client.get("/whoami", headers={"Authorization": f"Bearer {old_token}"})
    assert resp.status_code == 401
    assert resp.json()["code"] == "TOKEN_REVOKED"
    ok = await demo_client.get("/whoami", headers={"Authorization": f"Bearer {other_user}"})
    assert ok.status_code == 200
    # A token of the sign-out second itself is left to the jti deny-list.
    await r.set(revoked_before_key("u-3"), str(int(old["iat"])), ex=60)
    await r.aclose()
    same = await demo_client.get("/whoami", headers={"Authorization": f"Bearer {old_token}"})
    assert same.status_code == 200


async def test_internal_calls_go_out_with_a_service_token_for_the_requests_user(
    token_issuer: TokenIssuer,
) -> None:
    # ADR 0135: a service serving alice's request calls another service's /internal
    # route with a service token acting for alice, never with alice's own token; its
    # public-route calls still forward alice's token; the worker's own service token
    # (no acting user) goes out as it is.
    seen: list[tuple[str, str]] = []
    downstream = FastAPI()
    downstream.state.verifier = _verifier(token_issuer)
    install_error_handlers(downstream)

    @downstream.get("/internal/v1/thing")
    async def internal(principal: ServicePrincipal) -> dict[str, str]:
        seen.append(("internal", principal.subject))
        return {"user": principal.user_id}

    @downstream.get("/api/v1/thing")
    async def public(principal: CurrentPrincipal) -> dict[str, str]:
        seen.append(("public", principal.subject))
        return {"user": principal.user_id}

    server = AppServer(downstream, lifespan="off").start()
    http = create_http_client()
    try:
        tokens = AuthClient(
            token_issuer.url, http, client_id="agent", client_secret=SERVICE_CLIENT_SECRET
        )
        client = ServiceClient(server.url, http, service_tokens=tokens)
        upstream = FastAPI()
        upstream.state.verifier = _verifier(token_issuer)

        @upstream.get("/work")
        async def work(principal: CurrentPrincipal) -> dict[str, object]:
            internal = (await client.request("GET", "/internal/v1/thing")).json()
            public = (await client.request("GET", "/api/v1/thing")).json()
            return {"internal": internal["user"], "public": public["user"]}

        transport = httpx.ASGITransport(app=upstream)
        async with httpx.AsyncClient(transport=transport, base_url="http://up") as up:
            resp = await up.get("/work", headers=token_issuer.headers("alice"))
            assert resp.json() == {"internal": "alice", "public": "alice"}
            assert seen == [("internal", "service:agent"), ("public", "alice")]
            # The worker: its own service token, no acting user; nothing is minted.
            minted = len(token_issuer.service_token_requests)
            seen.clear()
            worker = token_issuer.headers("service:worker", roles=["service"], on_behalf_of="bo")
            resp = await up.get("/work", headers=worker)
            assert resp.json() == {"internal": "bo", "public": "bo"}
            assert seen == [("internal", "service:worker"), ("public", "service:worker")]
            assert len(token_issuer.service_token_requests) == minted
    finally:
        await http.aclose()
        server.stop()


def _verifier(issuer: TokenIssuer) -> TokenVerifier:
    return TokenVerifier(issuer=issuer.issuer, audience=issuer.audience, jwks=issuer.jwks)
