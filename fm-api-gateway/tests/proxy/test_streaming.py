"""Bodies stream both ways; limits, dead and slow upstreams answer in the error model."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable

import httpx
from gateway_testkit import Gate

from fm_common.testing.tokens import TokenIssuer


async def test_sse_event_arrives_before_the_upstream_finishes(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, gates: dict[str, Gate]
):
    gate = gates["sse"]
    gate.event.clear()
    headers = {**token_issuer.headers("u-sse"), "Accept": "text/event-stream"}
    async with client.stream("GET", "/api/v1/cases/c1/turns/sse", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.aiter_lines()
        first = [await anext(lines), await anext(lines)]
        # The upstream is still blocked on the gate: this came through unbuffered.
        assert first == ["event: token", "data: first"]
        assert not gate.event.is_set()
        gate.event.set()
        rest = [line async for line in lines]
    assert "data: released=True" in rest


async def test_large_download_streams_without_waiting_for_the_end(
    client: httpx.AsyncClient, token_issuer: TokenIssuer, gates: dict[str, Gate]
):
    gate = gates["download"]
    gate.event.clear()
    async with client.stream(
        "GET", "/api/v1/evidence/e1/content", headers=token_issuer.headers("u-dl")
    ) as resp:
        assert resp.status_code == 200
        received = 0
        chunks = resp.aiter_raw()
        while received < 1024 * 1024:
            received += len(await anext(chunks))
        assert not gate.event.is_set()
        gate.event.set()
        async for chunk in chunks:
            received += len(chunk)
    assert received == 20 * 1024 * 1024


async def test_client_leaving_a_stream_makes_the_gateway_hang_up_on_the_service(
    gateway_url: str, token_issuer: TokenIssuer, gates: dict[str, Gate]
):
    gates["sse"].event.clear()
    abandoned = gates["sse_abandoned"]
    abandoned.event.clear()
    headers = token_issuer.headers("u-leave")
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        async with client.stream("GET", "/api/v1/cases/c1/turns/sse", headers=headers) as resp:
            lines = resp.aiter_lines()
            assert await anext(lines) == "event: token"
    # The client is gone (its connection closed) while the service still holds the
    # stream open: the gateway must close its side, which cancels the service's stream.
    assert await abandoned.wait(timeout=10)
    assert not gates["sse"].event.is_set()
    gates["sse"].event.set()
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        after = await client.get("/api/v1/cases", headers=headers)
    assert after.status_code == 200


async def _chunks(total: int, size: int = 65536) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        part = bytes([sent // size % 251]) * min(size, total - sent)
        sent += len(part)
        yield part


async def test_chunked_upload_is_streamed_to_the_upstream_intact(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    total = 5 * 1024 * 1024
    digest = hashlib.sha256()
    async for part in _chunks(total):
        digest.update(part)
    resp = await client.post(
        "/api/v1/evidence", content=_chunks(total), headers=token_issuer.headers("u-up")
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"service": "evidence", "size": total, "sha256": digest.hexdigest()}


async def test_multipart_upload_with_content_length_arrives_whole(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    data = bytes(range(256)) * 8192  # 2 MiB: above the general limit, within uploads'
    resp = await client.post(
        "/api/v1/evidence",
        files={"file": ("app.log", data, "text/plain")},
        data={"case_id": "c1"},
        headers=token_issuer.headers("u-mp"),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["size"] > len(data)


async def test_oversized_body_is_413_from_its_content_length(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.post(
        "/api/v1/cases", content=b"x" * (1024 * 1024 + 1), headers=token_issuer.headers("u-big")
    )
    assert resp.status_code == 413
    assert resp.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_oversized_chunked_body_is_413_while_counting(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer
):
    url = start_gateway(max_upload_bytes=256 * 1024)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        resp = await client.post(
            "/api/v1/evidence",
            content=_chunks(2 * 1024 * 1024),
            headers=token_issuer.headers("u-big2"),
        )
        assert resp.status_code == 413
        assert resp.headers["x-error-code"] == "PAYLOAD_TOO_LARGE"
        # A body within the limit still goes through on the same gateway.
        ok = await client.post(
            "/api/v1/evidence", content=_chunks(100_000), headers=token_issuer.headers("u-big2")
        )
        assert ok.status_code == 200
        assert ok.json()["size"] == 100_000


async def test_upstream_down_is_503_with_retry_after(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer, dead_url: str
):
    url = start_gateway(session_url=dead_url)
    async with httpx.AsyncClient(base_url=url) as client:
        resp = await client.get("/api/v1/sessions", headers=token_issuer.headers("u-down"))
    assert resp.status_code == 503
    assert resp.json()["code"] == "UPSTREAM_UNAVAILABLE"
    assert int(resp.headers["retry-after"]) >= 1
    assert "Traceback" not in resp.text


async def test_upstream_timeout_is_504(client: httpx.AsyncClient, token_issuer: TokenIssuer):
    resp = await client.get("/api/v1/knowledge/slow", headers=token_issuer.headers("u-slow"))
    assert resp.status_code == 504
    assert resp.json()["code"] == "UPSTREAM_TIMEOUT"


async def test_concurrent_streams_and_plain_requests_do_not_mix(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    headers = token_issuer.headers("u-mix")

    async def upload(n: int) -> int:
        resp = await client.post("/api/v1/evidence", content=_chunks(n), headers=headers)
        return int(resp.json()["size"])

    sizes = [70_000 * (i + 1) for i in range(8)]
    results = await asyncio.gather(*(upload(n) for n in sizes))
    assert results == sizes


async def test_stalled_upload_is_408_not_held_forever(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer
):
    url = start_gateway(stream_idle_timeout=0.5)

    async def stalling() -> AsyncIterator[bytes]:
        yield b"x" * 70_000
        await asyncio.sleep(2.0)
        yield b"y" * 10

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        resp = await client.post(
            "/api/v1/evidence", content=stalling(), headers=token_issuer.headers("u-stall")
        )
    assert resp.status_code == 408
    assert resp.json()["code"] == "REQUEST_TIMEOUT"


async def test_oversized_headers_are_431(client: httpx.AsyncClient, token_issuer: TokenIssuer):
    headers = {**token_issuer.headers("u-hdr"), "X-Padding": "p" * 40_000}
    resp = await client.get("/api/v1/cases", headers=headers)
    assert resp.status_code == 431
    assert resp.json()["code"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"


async def test_a_service_refusing_an_upload_midway_is_answered_with_its_own_error(
    client: httpx.AsyncClient, token_issuer: TokenIssuer
):
    resp = await client.post(
        "/api/v1/knowledge/documents",
        content=_chunks(3 * 1024 * 1024),
        headers=token_issuer.headers("u-refused"),
    )
    assert resp.status_code == 413
    assert resp.json()["code"] == "FILE_TOO_LARGE"
    ok = await client.post(
        "/api/v1/knowledge/documents",
        content=_chunks(50_000),
        headers=token_issuer.headers("u-refused"),
    )
    assert ok.json() == {"size": 50_000}


async def test_knowledge_upload_over_the_file_limit_is_413_at_the_gateway(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer
):
    # Issue 16 item 9: a 30 MB knowledge upload passed the gateway's 55 MiB upload limit
    # and the knowledge service (25 MiB) hung up mid-body: the client saw 500/502.
    url = start_gateway(max_file_bytes=1024 * 1024)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        resp = await client.post(
            "/api/v1/knowledge/documents",
            files={"file": ("big.log", b"x" * (2 * 1024 * 1024), "text/plain")},
            headers=token_issuer.headers("u-kb-big"),
        )
        assert resp.status_code == 413
        assert resp.json()["code"] == "PAYLOAD_TOO_LARGE"
        # Chunked (no Content-Length): cut while counting.
        chunked = await client.post(
            "/api/v1/knowledge/documents",
            content=_chunks(2 * 1024 * 1024),
            headers=token_issuer.headers("u-kb-big"),
        )
        assert chunked.status_code == 413
        # Within the limit it goes through.
        ok = await client.post(
            "/api/v1/knowledge/documents",
            files={"file": ("ok.log", b"x" * 1000, "text/plain")},
            headers=token_issuer.headers("u-kb-big"),
        )
        assert ok.status_code != 413
