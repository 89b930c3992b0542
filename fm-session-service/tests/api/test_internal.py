"""The internal routes the auth service calls at login and logout, with its own service
tokens acting for the user (a user's own token is refused: ADR 0135)."""

from __future__ import annotations

import uuid

import httpx
import redis.asyncio as aioredis

from fm_common.clients.session import SessionClient
from fm_common.contracts.session import SessionCreateRequest
from fm_common.testing.tokens import TokenIssuer
from session_service.domain.sessions.repository import session_key, user_index_key

BODY = {"client_id": "ext", "session_type": "troubleshooting", "timeout_minutes": 180}


def _login_token(issuer: TokenIssuer, user: str, sid: str) -> dict[str, str]:
    """The auth service's service token for a login of `user` naming session `sid`."""
    return issuer.service_headers(user, client_id="auth", session_id=sid)


async def test_login_session_is_created_under_the_tokens_sid(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    sid = str(uuid.uuid4())
    headers = _login_token(token_issuer, "alice", sid)
    resp = await client.put(f"/internal/v1/sessions/{sid}", json={}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["session_id"] == sid
    assert resp.json()["user_id"] == "alice"
    # A retry of the same login returns the same session rather than a second one.
    again = await client.put(f"/internal/v1/sessions/{sid}", json={}, headers=headers)
    assert again.json()["session_id"] == sid
    assert again.json()["created_at"] == resp.json()["created_at"]
    as_alice = token_issuer.headers("alice", sid=sid)
    listed = (await client.get("/api/v1/sessions", headers=as_alice)).json()
    assert listed["total_count"] == 1


async def test_login_session_must_be_the_tokens_own_sid(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    headers = _login_token(token_issuer, "alice", str(uuid.uuid4()))
    resp = await client.put(f"/internal/v1/sessions/{uuid.uuid4()}", json={}, headers=headers)
    assert resp.status_code == 403
    assert resp.json()["code"] == "SESSION_ID_MISMATCH"


async def test_bind_attaches_an_anonymous_session_to_the_user(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis: aioredis.Redis
):
    anon = (await client.post("/api/v1/sessions", json=BODY)).json()
    sid = anon["session_id"]
    headers = _login_token(token_issuer, "bob", sid)
    bound = await client.put(f"/internal/v1/sessions/{sid}/user", headers=headers)
    assert bound.status_code == 200, bound.text
    assert bound.json()["user_id"] == "bob"
    assert await redis.zscore(user_index_key("bob"), sid) is not None
    as_bob = token_issuer.headers("bob", sid=sid)
    got = await client.get(f"/api/v1/sessions/{sid}", headers=as_bob)
    assert got.status_code == 200
    # Bob's client id now resumes it for Bob, and no longer for anonymous callers.
    resumed = (await client.post("/api/v1/sessions", json=BODY, headers=as_bob)).json()
    assert resumed["session_id"] == sid
    assert resumed["session_resumed"] is True
    anonymous = (await client.post("/api/v1/sessions", json=BODY)).json()
    assert anonymous["session_id"] != sid


async def test_bound_session_cannot_be_bound_by_another_user(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    sid = (await client.post("/api/v1/sessions", json=BODY)).json()["session_id"]
    assert (
        await client.put(
            f"/internal/v1/sessions/{sid}/user", headers=_login_token(token_issuer, "carol", sid)
        )
    ).status_code == 200
    theft = await client.put(
        f"/internal/v1/sessions/{sid}/user", headers=_login_token(token_issuer, "mallory", sid)
    )
    assert theft.status_code == 404
    owner = await client.get(f"/api/v1/sessions/{sid}", headers=token_issuer.headers("carol"))
    assert owner.json()["user_id"] == "carol"


async def test_bind_of_an_expired_session_is_404(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis: aioredis.Redis
):
    sid = (await client.post("/api/v1/sessions", json=BODY)).json()["session_id"]
    await redis.delete(session_key(sid))
    resp = await client.put(
        f"/internal/v1/sessions/{sid}/user", headers=_login_token(token_issuer, "dave", sid)
    )
    assert resp.status_code == 404


async def test_end_all_removes_only_the_callers_sessions(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis: aioredis.Redis
):
    erin = token_issuer.headers("erin")
    ids = [
        (
            await client.post("/api/v1/sessions", json={**BODY, "client_id": f"c{i}"}, headers=erin)
        ).json()["session_id"]
        for i in range(3)
    ]
    other = (
        await client.post("/api/v1/sessions", json=BODY, headers=token_issuer.headers("frank"))
    ).json()
    resp = await client.delete(
        "/internal/v1/sessions", headers=token_issuer.service_headers("erin", client_id="auth")
    )
    assert resp.status_code == 200
    assert resp.json() == {"ended_sessions": 3}
    for sid in ids:
        assert await redis.exists(session_key(sid)) == 0
    assert (await client.get("/api/v1/sessions", headers=erin)).json()["total_count"] == 0
    assert await redis.exists(session_key(other["session_id"])) == 1


async def test_internal_routes_refuse_a_users_own_token(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    # Issue 16 item 10: a user's own token reached /internal routes on a service's port.
    sid = str(uuid.uuid4())
    own = token_issuer.headers("ivy", sid=sid)
    for method, path in (
        ("PUT", f"/internal/v1/sessions/{sid}"),
        ("PUT", f"/internal/v1/sessions/{sid}/user"),
        ("DELETE", "/internal/v1/sessions"),
    ):
        resp = await client.request(method, path, headers=own)
        assert resp.status_code == 403, path
        assert resp.json()["code"] == "SERVICE_ONLY"
    # The same login with the auth service's token acting for ivy works.
    opened = await client.put(
        f"/internal/v1/sessions/{sid}", json={}, headers=_login_token(token_issuer, "ivy", sid)
    )
    assert opened.status_code == 200
    assert opened.json()["user_id"] == "ivy"


async def test_internal_routes_need_a_token(client: httpx.AsyncClient):
    sid = str(uuid.uuid4())
    assert (await client.put(f"/internal/v1/sessions/{sid}", json={})).status_code == 401
    assert (await client.put(f"/internal/v1/sessions/{sid}/user")).status_code == 401
    assert (
        await client.delete("/internal/v1/sessions", headers={"X-User-ID": "x"})
    ).status_code == 401


async def test_session_client_speaks_the_routes(make_settings, token_issuer: TokenIssuer):
    from fm_common.clients.base import create_http_client
    from fm_common.testing.servers import AppServer
    from session_service.main import create_app

    server = AppServer(create_app(make_settings())).start()
    http = create_http_client()
    try:
        sessions = SessionClient(server.url, http)
        sid = str(uuid.uuid4())
        token = token_issuer.token("gina", sid=sid)
        auth = token_issuer.service_token("gina", client_id="auth", session_id=sid)
        opened = await sessions.open_login_session(
            sid, auth, SessionCreateRequest(timeout_minutes=60)
        )
        assert opened.session_id == sid
        assert opened.timeout_minutes == 60
        assert (await sessions.get(sid, token)).user_id == "gina"
        assert await sessions.bind(str(uuid.uuid4()), auth) is None
        assert await sessions.end(sid, token) is True
        assert await sessions.end(sid, token) is False
        assert await sessions.end_all(auth) == 0
    finally:
        await http.aclose()
        server.stop()
