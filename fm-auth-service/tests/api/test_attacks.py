"""Token attacks against the auth service's /me reached directly: every one is a 401."""

from __future__ import annotations

import base64
import hmac
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from auth_service.domain.tokens.keys import load_or_create_signing_key


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _sign(claims: dict, private_key, kid: str) -> str:
    return jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid})


def _attacks(data_dir: Path, valid: str) -> dict[str, str]:
    key = load_or_create_signing_key(data_dir / "auth" / "signing_key.pem", create=False)
    claims = jwt.decode(valid, options={"verify_signature": False})
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_head = _b64({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    hs_signing_input = f"{hs_head}.{_b64(claims)}"
    hs_sig = base64.urlsafe_b64encode(
        hmac.new(public_pem, hs_signing_input.encode(), "sha256").digest()
    ).rstrip(b"=")
    head, body, sig = valid.split(".")
    now = int(time.time())
    return {
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{_b64(claims)}.",
        "hs256_signed_with_public_key": f"{hs_signing_input}.{hs_sig.decode()}",
        "expired": _sign({**claims, "iat": now - 1000, "exp": now - 100}, key.private_key, key.kid),
        "wrong_audience": _sign({**claims, "aud": "someone-else"}, key.private_key, key.kid),
        "wrong_issuer": _sign({**claims, "iss": "evil"}, key.private_key, key.kid),
        "refresh_type": _sign({**claims, "type": "refresh"}, key.private_key, key.kid),
        "tampered_signature": f"{head}.{body}.{sig[:-6]}AAAAAA",
        "tampered_payload": f"{head}.{_b64({**claims, 'sub': 'someone-else'})}.{sig}",
    }


ATTACKS = [
    "alg_none",
    "hs256_signed_with_public_key",
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "refresh_type",
    "tampered_signature",
    "tampered_payload",
]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_token_attack_on_me_is_401(client: httpx.AsyncClient, register, data_dir, attack):
    body = await register("victim")
    token = _attacks(data_dir, body["access_token"])[attack]
    resp = await client.get(
        "/api/v1/auth/me",
        headers={"Authorization": f"Bearer {token}", "X-User-ID": body["user"]["user_id"]},
    )
    assert resp.status_code == 401, resp.text
    assert resp.json()["code"] in {"INVALID_TOKEN", "TOKEN_EXPIRED"}
    assert "victim" not in resp.text


async def test_real_refresh_token_used_as_access_token_is_401(client: httpx.AsyncClient, register):
    body = await register("victim")
    resp = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['refresh_token']}"}
    )
    assert resp.status_code == 401
    assert resp.json()["code"] == "INVALID_TOKEN"


async def test_forged_user_header_without_token_is_401(client: httpx.AsyncClient, register):
    body = await register("victim")
    resp = await client.get(
        "/api/v1/auth/me",
        headers={"X-User-ID": body["user"]["user_id"], "X-User-Roles": "admin"},
    )
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_token_from_another_key_is_401(client: httpx.AsyncClient, register, token_issuer):
    body = await register("victim")
    forged = token_issuer.token(body["user"]["user_id"])
    resp = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401
