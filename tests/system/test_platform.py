"""The platform slice through the gateway, with the real processes `make run` starts.

Redis, auth, session and the gateway run from faultmaven-deploy/Procfile on free ports;
the client speaks only to the gateway, in the order the real extension does.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fm_common.devstack import Stack

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("auth_service.main") is None
    or importlib.util.find_spec("session_service.main") is None,
    reason="the auth and session services are not installed",
)

PASSWORD = "correct horse battery staple"
EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("platform")
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only={"redis", "auth", "session", "gateway"},
        log_dir=root / "logs",
        extra_env={"FM_AUTH_BCRYPT_ROUNDS": "4", "FM_AUTH_REGISTRATIONS_PER_ADDRESS": "100000"},
    )
    try:
        stack.start(timeout=120)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def gateway(platform: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        yield client


def test_register_login_me_heartbeat_logout_then_old_token_refused(gateway: httpx.Client):
    caps = gateway.get("/v1/meta/capabilities", headers={"Origin": EXTENSION})
    assert caps.status_code == 200
    assert caps.json()["deploymentMode"] == "self-hosted"
    assert caps.headers["access-control-allow-origin"] == EXTENSION

    # The extension opens a session before login, without a token.
    anon = gateway.post(
        "/api/v1/sessions",
        json={
            "client_id": str(uuid.uuid4()),
            "session_type": "troubleshooting",
            "timeout_minutes": 180,
        },
    )
    assert anon.status_code == 201, anon.text
    session_id = anon.json()["session_id"]

    config = gateway.get("/api/v1/auth/config")
    assert config.status_code == 200
    assert config.json()["auth_mode"] == "local"

    username = f"ada_{uuid.uuid4().hex[:8]}"
    reg = gateway.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert reg.status_code == 201, reg.text
    assert reg.json()["token_type"] == "bearer"

    login = gateway.post(
        "/api/v1/auth/login",
        json={"username": username, "password": PASSWORD},
        headers={"X-Session-Id": session_id, "X-Request-ID": "platform-login-1"},
    )
    assert login.status_code == 200, login.text
    assert login.headers["x-request-id"] == "platform-login-1"
    body = login.json()
    assert body["session_id"] == session_id
    headers = {"Authorization": f"Bearer {body['access_token']}", "X-Session-Id": session_id}

    me = gateway.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == username

    beat = gateway.post(f"/api/v1/sessions/{session_id}/heartbeat", headers=headers)
    assert beat.status_code == 200, beat.text
    assert beat.json()["user_id"] == body["user"]["user_id"]

    out = gateway.post("/api/v1/auth/logout", headers=headers)
    assert out.status_code == 200, out.text

    # Refused at the gateway (deny-listed jti), whatever route the old token tries.
    for method, path in (("GET", "/api/v1/auth/me"), ("GET", "/api/v1/sessions")):
        again = gateway.request(method, path, headers=headers)
        assert again.status_code == 401, again.text
        assert again.json()["code"] == "TOKEN_REVOKED"


def test_identity_headers_do_not_replace_a_token(gateway: httpx.Client):
    resp = gateway.get("/api/v1/auth/me", headers={"X-User-ID": "someone", "X-User-Roles": "admin"})
    assert resp.status_code == 401


def test_internal_routes_are_not_reachable_through_the_gateway(
    gateway: httpx.Client, platform: Stack
):
    resp = gateway.post("/internal/v1/service-token", json={"client_id": "worker"})
    assert resp.status_code == 404
    # They exist on the service itself, which is not published outside the host.
    direct = httpx.post(
        f"{platform.url('auth')}/internal/v1/service-token", json={"client_id": "worker"}
    )
    assert direct.status_code != 404


def test_health_and_merged_openapi_cover_the_running_services(gateway: httpx.Client):
    health = gateway.get("/health")
    # Case, knowledge, evidence, agent and Chroma are not started here: degraded, not down.
    assert health.status_code == 200
    services = health.json()["services"]
    assert health.json()["status"] == "degraded"
    for name in ("auth", "session", "redis", "gateway"):
        assert services[name]["status"] == "healthy", name
    assert services["case"]["status"] == "unhealthy"

    doc = gateway.get("/openapi.json").json()
    assert doc["paths"]["/api/v1/auth/login"]["post"]["security"] == []
    assert doc["paths"]["/api/v1/auth/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert "/api/v1/sessions/{session_id}/heartbeat" in doc["paths"]
    assert not [p for p in doc["paths"] if p.startswith("/internal")]


def test_refresh_through_the_gateway_rotates_and_refuses_reuse(gateway: httpx.Client):
    username = f"grace_{uuid.uuid4().hex[:8]}"
    reg = gateway.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert reg.status_code == 201, reg.text
    refresh_token = reg.json()["refresh_token"]

    rotated = gateway.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert rotated.status_code == 200, rotated.text
    new_access = rotated.json()["access_token"]
    me = gateway.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {new_access}"})
    assert me.status_code == 200
    assert me.json()["username"] == username

    reused = gateway.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert reused.status_code == 401


def test_make_run_serves_https_when_given_a_certificate(tmp_path: Path):
    """`make run` with FM_GATEWAY_TLS_CERT_FILE / _KEY_FILE: the devstack starts the
    gateway on HTTPS, waits for it over HTTPS and the whole register -> me path works."""
    import ssl

    from fm_common.testing.tls import self_signed

    cert, key = self_signed(tmp_path)
    stack = Stack(
        data_dir=tmp_path / "data",
        ports=Stack.free_ports(),
        only={"redis", "auth", "session", "gateway"},
        log_dir=tmp_path / "logs",
        extra_env={
            "FM_AUTH_BCRYPT_ROUNDS": "4",
            "FM_GATEWAY_TLS_CERT_FILE": str(cert),
            "FM_GATEWAY_TLS_KEY_FILE": str(key),
        },
    )
    try:
        stack.start(timeout=120)
        assert stack.gateway_url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=stack.gateway_url, verify=trust, timeout=30) as client:
            reg = client.post(
                "/api/v1/auth/register",
                json={"username": "tls-user", "password": PASSWORD},
            )
            assert reg.status_code == 201, reg.text
            token = reg.json()["access_token"]
            me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
            assert me.json()["username"] == "tls-user"
    finally:
        stack.stop()
