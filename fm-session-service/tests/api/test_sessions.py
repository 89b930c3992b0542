"""The public session routes with a real Redis and real token verification."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

import httpx
import redis.asyncio as aioredis

from fm_common.testing.tokens import TokenIssuer
from session_service.config import Settings
from session_service.domain.sessions.repository import session_key, user_index_key
from session_service.main import create_app

BODY = {"client_id": "client-abc", "session_type": "troubleshooting", "timeout_minutes": 180}


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_anonymous_create_returns_201_with_reference_shape(client: httpx.AsyncClient):
    resp = await client.post("/api/v1/sessions", json=BODY)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    uuid.UUID(body["session_id"])
    assert body["client_id"] == "client-abc"
    assert body["user_id"] is None
    assert body["session_resumed"] is False
    assert body["status"] == "active"
    assert body["session_type"] == "troubleshooting"
    assert body["timeout_minutes"] == 180
    assert body["schema_version"] == "3.1.0"
    lifetime = _ts(body["expires_at"]) - _ts(body["created_at"])
    assert abs(lifetime.total_seconds() - 180 * 60) <= 1


async def test_session_key_ttl_matches_timeout(client: httpx.AsyncClient, redis: aioredis.Redis):
    resp = await client.post("/api/v1/sessions", json={**BODY, "timeout_minutes": 60})
    ttl = await redis.ttl(session_key(resp.json()["session_id"]))
    assert 3590 <= ttl <= 3600


async def test_create_without_body_uses_defaults(client: httpx.AsyncClient):
    resp = await client.post("/api/v1/sessions")
    assert resp.status_code == 201
    assert resp.json()["timeout_minutes"] == 180
    assert resp.json()["client_id"] is None


async def test_timeout_outside_60_to_480_is_422(client: httpx.AsyncClient):
    for minutes in (59, 481, 0, -5):
        resp = await client.post("/api/v1/sessions", json={**BODY, "timeout_minutes": minutes})
        assert resp.status_code == 422, minutes
        assert resp.json()["code"] == "VALIDATION_ERROR"
        assert isinstance(resp.json()["detail"], list)


async def test_oversized_metadata_is_422(client: httpx.AsyncClient):
    resp = await client.post("/api/v1/sessions", json={**BODY, "metadata": {"x": "a" * 9000}})
    assert resp.status_code == 422


async def test_same_client_id_resumes_the_anonymous_session(client: httpx.AsyncClient):
    first = (await client.post("/api/v1/sessions", json=BODY)).json()
    second = await client.post("/api/v1/sessions", json=BODY)
    assert second.status_code == 201
    assert second.json()["session_id"] == first["session_id"]
    assert second.json()["session_resumed"] is True
    other = (await client.post("/api/v1/sessions", json={**BODY, "client_id": "other"})).json()
    assert other["session_id"] != first["session_id"]


async def test_user_resume_by_client_id_is_scoped_to_that_user(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    alice = token_issuer.headers("alice")
    mine = (await client.post("/api/v1/sessions", json=BODY, headers=alice)).json()
    assert mine["user_id"] == "alice"
    again = (await client.post("/api/v1/sessions", json=BODY, headers=alice)).json()
    assert again["session_id"] == mine["session_id"]
    assert again["session_resumed"] is True
    bob = await client.post("/api/v1/sessions", json=BODY, headers=token_issuer.headers("bob"))
    assert bob.json()["session_id"] != mine["session_id"]
    assert bob.json()["session_resumed"] is False
    anonymous = (await client.post("/api/v1/sessions", json=BODY)).json()
    assert anonymous["session_id"] != mine["session_id"]
    assert anonymous["user_id"] is None


async def test_get_and_list_my_sessions(client: httpx.AsyncClient, token_issuer: TokenIssuer):
    headers = token_issuer.headers("carol")
    a = (await client.post("/api/v1/sessions", json=BODY, headers=headers)).json()
    b = (
        await client.post("/api/v1/sessions", json={**BODY, "client_id": "two"}, headers=headers)
    ).json()
    await client.post("/api/v1/sessions", json=BODY, headers=token_issuer.headers("dave"))
    got = await client.get(f"/api/v1/sessions/{a['session_id']}", headers=headers)
    assert got.status_code == 200
    assert got.json()["session_id"] == a["session_id"]
    listed = await client.get("/api/v1/sessions", headers=headers)
    assert listed.status_code == 200
    body = listed.json()
    assert {s["session_id"] for s in body["sessions"]} == {a["session_id"], b["session_id"]}
    assert body["total_count"] == 2
    assert body["has_more"] is False
    page = (await client.get("/api/v1/sessions?limit=1", headers=headers)).json()
    assert len(page["sessions"]) == 1
    assert page["has_more"] is True


async def test_list_limit_out_of_range_is_422(client: httpx.AsyncClient, token_issuer: TokenIssuer):
    resp = await client.get("/api/v1/sessions?limit=101", headers=token_issuer.headers("u"))
    assert resp.status_code == 422


async def test_an_offset_past_a_64_bit_integer_is_422(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.get(
        "/api/v1/sessions?offset=9223372036854775808", headers=token_issuer.headers("u")
    )
    assert resp.status_code == 422


async def test_other_user_gets_404_for_my_session(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    mine = (
        await client.post("/api/v1/sessions", json=BODY, headers=token_issuer.headers("eve"))
    ).json()
    sid = mine["session_id"]
    mallory = token_issuer.headers("mallory")
    assert (await client.get(f"/api/v1/sessions/{sid}", headers=mallory)).status_code == 404
    # A heartbeat answers as for a gone session (the same for every session not the
    # caller's, so nothing tells them apart).
    beat = await client.post(f"/api/v1/sessions/{sid}/heartbeat", headers=mallory)
    assert (beat.status_code, beat.json()["code"]) == (401, "SESSION_EXPIRED")
    assert (await client.delete(f"/api/v1/sessions/{sid}", headers=mallory)).status_code == 404
    still = await client.get(f"/api/v1/sessions/{sid}", headers=token_issuer.headers("eve"))
    assert still.status_code == 200


async def test_anonymous_session_is_not_readable_by_a_user(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    anon = (await client.post("/api/v1/sessions", json=BODY)).json()
    resp = await client.get(
        f"/api/v1/sessions/{anon['session_id']}", headers=token_issuer.headers("x")
    )
    assert resp.status_code == 404


async def test_reading_sessions_needs_a_token(client: httpx.AsyncClient):
    anon = (await client.post("/api/v1/sessions", json=BODY)).json()
    resp = await client.get(f"/api/v1/sessions/{anon['session_id']}", headers={"X-User-ID": "x"})
    assert resp.status_code == 401
    assert (await client.get("/api/v1/sessions")).status_code == 401


async def test_heartbeat_extends_the_ttl(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis: aioredis.Redis
):
    headers = token_issuer.headers("frank")
    sid = (
        await client.post("/api/v1/sessions", json={**BODY, "timeout_minutes": 60}, headers=headers)
    ).json()["session_id"]
    await redis.expire(session_key(sid), 100)
    resp = await client.post(f"/api/v1/sessions/{sid}/heartbeat", headers=headers)
    assert resp.status_code == 200
    assert resp.json()["session_id"] == sid
    assert await redis.ttl(session_key(sid)) > 3500
    score = await redis.zscore(user_index_key("frank"), sid)
    assert abs(score - _ts(resp.json()["expires_at"]).timestamp()) <= 1


async def test_expired_session_heartbeat_is_401_session_expired(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis: aioredis.Redis
):
    headers = token_issuer.headers("gina")
    sid = (await client.post("/api/v1/sessions", json=BODY, headers=headers)).json()["session_id"]
    await redis.pexpire(session_key(sid), 1)
    await asyncio.sleep(0.05)
    resp = await client.post(f"/api/v1/sessions/{sid}/heartbeat", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["code"] == "SESSION_EXPIRED"
    assert resp.headers["x-error-code"] == "SESSION_EXPIRED"
    assert (await client.get(f"/api/v1/sessions/{sid}", headers=headers)).status_code == 404
    listed = (await client.get("/api/v1/sessions", headers=headers)).json()
    assert listed["total_count"] == 0


async def test_expired_session_is_pruned_from_the_user_index(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis: aioredis.Redis
):
    headers = token_issuer.headers("hank")
    sid = (await client.post("/api/v1/sessions", json=BODY, headers=headers)).json()["session_id"]
    keep = (
        await client.post("/api/v1/sessions", json={**BODY, "client_id": "k"}, headers=headers)
    ).json()["session_id"]
    # Expire the session the way Redis would, and age its index entry to match.
    await redis.pexpire(session_key(sid), 1)
    await redis.zadd(user_index_key("hank"), {sid: 1.0})
    await asyncio.sleep(0.05)
    listed = (await client.get("/api/v1/sessions", headers=headers)).json()
    assert [s["session_id"] for s in listed["sessions"]] == [keep]
    assert await redis.zrange(user_index_key("hank"), 0, -1) == [keep]


async def test_unknown_session_heartbeat_is_401_session_expired(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.post(
        f"/api/v1/sessions/{uuid.uuid4()}/heartbeat", headers=token_issuer.headers("i")
    )
    assert resp.status_code == 401
    assert resp.json()["code"] == "SESSION_EXPIRED"


async def test_heartbeat_of_an_ended_session_is_401_session_expired(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    headers = token_issuer.headers("ida")
    sid = (await client.post("/api/v1/sessions", json=BODY, headers=headers)).json()["session_id"]
    assert (await client.delete(f"/api/v1/sessions/{sid}", headers=headers)).status_code == 204
    resp = await client.post(f"/api/v1/sessions/{sid}/heartbeat", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["x-error-code"] == "SESSION_EXPIRED"


async def test_delete_session_is_204_then_gone(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, redis: aioredis.Redis
):
    headers = token_issuer.headers("judy")
    sid = (await client.post("/api/v1/sessions", json=BODY, headers=headers)).json()["session_id"]
    resp = await client.delete(f"/api/v1/sessions/{sid}", headers=headers)
    assert resp.status_code == 204
    assert (await client.get(f"/api/v1/sessions/{sid}", headers=headers)).status_code == 404
    assert await redis.zscore(user_index_key("judy"), sid) is None
    # The client id no longer resumes the deleted session.
    fresh = (await client.post("/api/v1/sessions", json=BODY, headers=headers)).json()
    assert fresh["session_id"] != sid
    assert fresh["session_resumed"] is False
    assert (await client.delete(f"/api/v1/sessions/{sid}", headers=headers)).status_code == 404


async def test_anonymous_creation_is_rate_limited_per_address(
    make_settings: Callable[..., Settings], token_issuer: TokenIssuer
):
    app = create_app(make_settings(create_limit_per_address=3, create_limit_window_seconds=60))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as c:
            from_a = {"X-Forwarded-For": "203.0.113.7"}
            for _ in range(3):
                assert (
                    await c.post("/api/v1/sessions", json=BODY, headers=from_a)
                ).status_code == 201
            limited = await c.post("/api/v1/sessions", json=BODY, headers=from_a)
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["Retry-After"]) <= 61
            assert limited.json()["code"] == "RATE_LIMITED"
            other = await c.post(
                "/api/v1/sessions", json=BODY, headers={"X-Forwarded-For": "203.0.113.8"}
            )
            assert other.status_code == 201
            # A signed-in user at the same address is counted on their own.
            signed_in = await c.post(
                "/api/v1/sessions", json=BODY, headers={**from_a, **token_issuer.headers("u1")}
            )
            assert signed_in.status_code == 201
            user = token_issuer.headers("u2")
            for i in range(3):
                ok = await c.post(
                    "/api/v1/sessions", json={**BODY, "client_id": f"c{i}"}, headers=user
                )
                assert ok.status_code == 201
            too_many = await c.post(
                "/api/v1/sessions", json={**BODY, "client_id": "c9"}, headers=user
            )
            assert too_many.status_code == 429


async def test_redis_down_is_503_with_retry_after(make_settings: Callable[..., Settings]):
    from fm_common.testing.ports import free_port

    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as c:
            resp = await c.post("/api/v1/sessions", json=BODY)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"]
    assert "Traceback" not in resp.text


async def test_heartbeat_with_a_token_claims_a_live_anonymous_session(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    # The real extension opens its session without a token at every start, even when
    # it is still logged in, then keeps it alive with its token.
    sid = (await client.post("/api/v1/sessions", json=BODY)).json()["session_id"]
    kim = token_issuer.headers("kim")
    beat = await client.post(f"/api/v1/sessions/{sid}/heartbeat", headers=kim)
    assert beat.status_code == 200
    assert beat.json()["user_id"] == "kim"
    assert (await client.get(f"/api/v1/sessions/{sid}", headers=kim)).status_code == 200
    # Once it is Kim's, nobody else can claim or read it.
    other = token_issuer.headers("lou")
    assert (
        await client.post(f"/api/v1/sessions/{sid}/heartbeat", headers=other)
    ).status_code == 401
    assert (await client.get(f"/api/v1/sessions/{sid}", headers=other)).status_code == 404
