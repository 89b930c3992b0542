"""Bad input gets a clear 4xx in the error model, never a 500 or a stack trace."""

from __future__ import annotations

import httpx
import pytest

BAD_REQUESTS = [
    ("POST", "/api/v1/auth/register", {"content": b"{not json"}),
    ("POST", "/api/v1/auth/register", {"json": ["a", "list"]}),
    ("POST", "/api/v1/auth/register", {"json": {"username": "x" * 51, "password": "p" * 10}}),
    ("POST", "/api/v1/auth/register", {"json": {"username": "okname", "password": 12345678}}),
    ("POST", "/api/v1/auth/register", {"json": {"username": "okname", "password": "a\x00bcdefgh"}}),
    ("POST", "/api/v1/auth/login", {"json": {"username": "u", "password": "p" * 2000}}),
    ("POST", "/api/v1/auth/login", {"json": {"username": "", "password": "x"}}),
    (
        "POST",
        "/api/v1/auth/login",
        {"content": b"", "headers": {"content-type": "application/json"}},
    ),
    ("POST", "/api/v1/auth/refresh", {"json": {"refresh_token": "x" * 5000}}),
    ("POST", "/api/v1/auth/refresh", {"json": {"refresh_token": "a.b.c"}}),
    ("POST", "/api/v1/auth/refresh", {"json": {}}),
    ("GET", "/api/v1/auth/me", {"headers": {"Authorization": "Bearer"}}),
    ("GET", "/api/v1/auth/me", {"headers": {"Authorization": "Basic dXNlcjpwdw=="}}),
    ("GET", "/api/v1/auth/me", {"headers": {"Authorization": "Bearer " + "A" * 10000}}),
    ("POST", "/api/v1/auth/logout?all=maybe", {}),
    ("POST", "/internal/v1/service-token", {"json": {"client_id": "worker"}}),
    ("POST", "/internal/v1/service-token", {"json": {"client_id": "", "client_secret": ""}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), BAD_REQUESTS)
async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, method, path, kwargs):
    resp = await client.request(method, path, **kwargs)
    assert 400 <= resp.status_code < 500, resp.text
    body = resp.json()
    assert body["code"]
    assert resp.headers["x-error-code"] == body["code"]
    assert "Traceback" not in resp.text


async def test_bad_session_ids_are_4xx_at_the_session_service(
    client: httpx.AsyncClient, register, session_server
):
    token = (await register("bad_input"))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=session_server.url) as sessions:
        for sid in ("%00", "x" * 5000, "..%2F..%2Fetc", "'; DROP"):
            for method, suffix in (("GET", ""), ("POST", "/heartbeat"), ("DELETE", "")):
                resp = await sessions.request(
                    method, f"/api/v1/sessions/{sid}{suffix}", headers=headers
                )
                assert resp.status_code in (401, 404), (sid, method, resp.text)
        for body in ({"timeout_minutes": "long"}, {"metadata": "not-a-dict"}, {"client_id": ""}):
            resp = await sessions.post("/api/v1/sessions", json=body)
            assert resp.status_code == 422, body
        wrong_type = await sessions.post(
            "/api/v1/sessions", content=b"[1,2]", headers={"content-type": "application/json"}
        )
        assert wrong_type.status_code == 422
