"""The real processes, as `make run` starts them: Redis, auth and session from the Procfile."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fm_common.devstack import Stack

PASSWORD = "correct horse battery"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(
        data_dir=tmp_path / "data",
        ports=Stack.free_ports(),
        only={"redis", "auth", "session"},
        log_dir=tmp_path / "logs",
        extra_env={"FM_AUTH_BCRYPT_ROUNDS": "4"},
    )
    try:
        s.start(timeout=90)
        yield s
    finally:
        s.stop()


def test_register_login_heartbeat_logout_across_real_processes(stack: Stack):
    auth = httpx.Client(base_url=stack.url("auth"), timeout=30)
    sessions = httpx.Client(base_url=stack.url("session"), timeout=30)
    with auth, sessions:
        anon = sessions.post(
            "/api/v1/sessions",
            json={"client_id": "ext", "session_type": "troubleshooting", "timeout_minutes": 180},
        )
        assert anon.status_code == 201
        reg = auth.post("/api/v1/auth/register", json={"username": "alice", "password": PASSWORD})
        assert reg.status_code == 201, reg.text
        login = auth.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Session-Id": anon.json()["session_id"]},
        )
        assert login.status_code == 200, login.text
        body = login.json()
        assert body["session_id"] == anon.json()["session_id"]
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        # The session service verifies the auth service's token through its JWKS.
        beat = sessions.post(f"/api/v1/sessions/{body['session_id']}/heartbeat", headers=headers)
        assert beat.status_code == 200, beat.text
        assert beat.json()["user_id"] == body["user"]["user_id"]
        assert auth.get("/api/v1/auth/me", headers=headers).status_code == 200
        out = auth.post("/api/v1/auth/logout", headers=headers)
        assert out.status_code == 200
        # The shared Redis deny-list makes every service refuse the old token.
        assert auth.get("/api/v1/auth/me", headers=headers).status_code == 401
        assert sessions.get("/api/v1/sessions", headers=headers).status_code == 401
        assert auth.get("/ready").status_code == 200
        assert sessions.get("/ready").status_code == 200
    key = stack.data_dir / "auth" / "signing_key.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert (stack.data_dir / "auth" / "auth.db").exists()


def test_worker_service_token_with_the_devstack_secret(stack: Stack):
    with httpx.Client(base_url=stack.url("auth"), timeout=30) as auth:
        reg = auth.post("/api/v1/auth/register", json={"username": "bob", "password": PASSWORD})
        user_id = reg.json()["user"]["user_id"]
        resp = auth.post(
            "/internal/v1/service-token",
            json={
                "client_id": "worker",
                "client_secret": stack.service_secret,
                "on_behalf_of": user_id,
            },
        )
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
    with httpx.Client(base_url=stack.url("session"), timeout=30) as sessions:
        listed = sessions.get("/api/v1/sessions", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
        assert [s["session_id"] for s in listed.json()["sessions"]] == [reg.json()["session_id"]]
