"""Answers validate against the reference OpenAPI the real extension speaks."""

from __future__ import annotations

import httpx
import jsonschema
import pytest

from fm_common.testing.reference import assert_matches

PASSWORD = "correct horse battery"


async def test_auth_answers_match_the_reference_schemas(client: httpx.AsyncClient, session_server):
    reg = await client.post(
        "/api/v1/auth/register",
        json={"username": "ref_user", "password": PASSWORD, "email": "ref@example.com"},
    )
    assert_matches("AuthTokenResponse", reg.json())
    # A user without an email still answers with the string the schema requires.
    bare = await client.post(
        "/api/v1/auth/register", json={"username": "bare_user", "password": PASSWORD}
    )
    assert_matches("AuthTokenResponse", bare.json())
    assert_matches("UserProfile", bare.json()["user"])
    login = await client.post(
        "/api/v1/auth/login", json={"username": "ref_user", "password": PASSWORD}
    )
    assert_matches("AuthTokenResponse", login.json())
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert_matches(
        "UserInfoResponse", (await client.get("/api/v1/auth/me", headers=headers)).json()
    )
    assert_matches("AuthConfigResponse", (await client.get("/api/v1/auth/config")).json())
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert_matches("TokenRefreshResponse", refreshed.json())
    async with httpx.AsyncClient(base_url=session_server.url) as sessions:
        created = await sessions.post(
            "/api/v1/sessions",
            json={"client_id": "c-1", "session_type": "troubleshooting", "timeout_minutes": 180},
        )
        assert_matches("SessionResponse", created.json())
        got = await sessions.get(f"/api/v1/sessions/{login.json()['session_id']}", headers=headers)
        assert_matches("SessionResponse", got.json())
    out = await client.post("/api/v1/auth/logout", headers=headers)
    assert_matches("LogoutResponse", out.json())


def test_the_validator_rejects_a_wrong_shape():
    with pytest.raises(jsonschema.ValidationError):
        assert_matches("AuthTokenResponse", {"access_token": "x", "expires_in": "soon"})
