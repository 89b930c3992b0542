"""Requests reach the right service, with identity headers stripped and the request id carried."""

from __future__ import annotations

import httpx
import pytest

from fm_common.testing.tokens import TokenIssuer


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/me", "auth"),
        ("/api/v1/sessions/s1", "session"),
        ("/api/v1/cases/c1/ui", "case"),
        ("/api/v1/cases/c1/turns/jobs/j1", "agent"),
        ("/api/v1/cases/c1/uploaded-files", "evidence"),
        ("/api/v1/evidence/e1", "evidence"),
        ("/api/v1/knowledge/documents", "knowledge"),
    ],
)
async def test_each_prefix_reaches_its_service(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, path: str, service: str
):
    resp = await client.get(path, headers=token_issuer.headers("u-route"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["service"] == service
    assert resp.headers["x-upstream"] == service


async def test_method_path_query_and_body_are_forwarded(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.put(
        "/api/v1/cases/c9?include_archived=true&q=a%20b",
        headers=token_issuer.headers("u-fwd"),
        json={"title": "x" * 100},
    )
    body = resp.json()
    assert body["method"] == "PUT"
    assert body["path"] == "/api/v1/cases/c9"
    assert body["query"] == "include_archived=true&q=a%20b"
    assert body["body_len"] == len(b'{"title":"' + b"x" * 100 + b'"}')
    assert resp.headers["location"] == "/from/case"


async def test_internal_routes_are_never_routed(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    for path in ("/internal/v1/case-secrets", "/internal/v1/capabilities", "/internal"):
        resp = await client.get(path, headers=token_issuer.headers("u-int"))
        assert resp.status_code == 404
        assert resp.json()["code"] == "NOT_FOUND"
        assert "secret" not in resp.text


async def test_unknown_api_path_is_404_in_the_error_model(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.get("/api/v1/nothing-here", headers=token_issuer.headers("u-404"))
    assert resp.status_code == 404
    assert resp.headers["x-error-code"] == "NOT_FOUND"


async def test_dot_segment_paths_are_refused(gateway_url: str, token_issuer: TokenIssuer):
    # httpx normalises dot segments, so send the raw request line.
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", int(gateway_url.rsplit(":", 1)[1]))
    auth = token_issuer.headers("u-dots")["Authorization"]
    writer.write(
        f"GET /api/v1/auth/../../internal/v1/auth-secrets HTTP/1.1\r\nhost: x\r\n"
        f"authorization: {auth}\r\nconnection: close\r\n\r\n".encode()
    )
    raw = await reader.read()
    writer.close()
    assert raw.startswith(b"HTTP/1.1 400")
    assert b"secret" not in raw


async def test_client_identity_headers_are_stripped(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.get(
        "/api/v1/cases/c1",
        headers={
            **token_issuer.headers("u-real"),
            "X-User-ID": "someone-else",
            "X-User-Roles": "admin",
            "X-Internal-Service": "agent",
            "X-Session-Id": "s-1",
        },
    )
    seen = resp.json()["headers"]
    assert not any(h.startswith(("x-user-", "x-internal-")) for h in seen)
    assert seen["x-session-id"] == "s-1"
    assert seen["authorization"].startswith("Bearer ")


async def test_request_id_is_accepted_echoed_and_forwarded(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.get(
        "/api/v1/cases", headers={**token_issuer.headers("u-rid"), "X-Request-ID": "abc-123"}
    )
    assert resp.headers["x-request-id"] == "abc-123"
    assert resp.json()["headers"]["x-request-id"] == "abc-123"


async def test_bad_request_id_is_replaced_and_a_missing_one_generated(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.get(
        "/api/v1/cases", headers={**token_issuer.headers("u-rid2"), "X-Request-ID": "bad id!"}
    )
    generated = resp.headers["x-request-id"]
    assert generated != "bad id!"
    assert resp.json()["headers"]["x-request-id"] == generated
    resp = await client.get("/api/v1/cases")  # 401 from the gateway itself
    assert resp.status_code == 401
    assert len(resp.headers["x-request-id"]) >= 16


async def test_keep_alive_connections_are_reused_across_many_requests(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    headers = token_issuer.headers("u-many")
    import asyncio

    results = await asyncio.gather(
        *(client.get(f"/api/v1/cases/c{i}", headers=headers) for i in range(60))
    )
    assert [r.json()["path"] for r in results] == [f"/api/v1/cases/c{i}" for i in range(60)]


async def test_sequential_requests_reuse_one_upstream_connection(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    headers = token_issuer.headers("u-keepalive")
    ports = {
        (await client.get("/api/v1/knowledge/x", headers=headers)).json()["peer_port"]
        for _ in range(20)
    }
    assert len(ports) == 1


async def test_head_is_answered_without_a_body_and_the_connection_stays_usable(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    headers = token_issuer.headers("u-head")
    head = await client.head("/api/v1/cases/c1", headers=headers)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    after = await client.get("/api/v1/cases/c2", headers=headers)
    assert after.json()["path"] == "/api/v1/cases/c2"


async def test_empty_post_keeps_its_zero_content_length(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.post("/api/v1/cases/c1/archive", headers=token_issuer.headers("u-0"))
    seen = resp.json()
    assert seen["method"] == "POST"
    assert seen["headers"]["content-length"] == "0"
    assert seen["body_len"] == 0
