"""A pooled connection the service has closed: retried only when the request is safe twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from fm_common.testing.tokens import TokenIssuer


class ClosingService:
    """Answers the first request of each connection, then closes on the next one unanswered
    (what a keep-alive timeout racing a new request looks like to the gateway)."""

    def __init__(self) -> None:
        self.answered: list[str] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if served:
                    break  # a second request on this connection: drop it
                method = head.split(b" ", 1)[0].decode()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                self.answered.append(method)
                body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def closing_service() -> AsyncIterator[ClosingService]:
    service = ClosingService()
    service.server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    yield service
    service.server.close()


async def test_idempotent_request_on_a_closed_pooled_connection_is_retried(
    start_gateway: Callable[..., str], closing_service: ClosingService, token_issuer: TokenIssuer
):
    url = start_gateway(case_url=closing_service.url)
    headers = token_issuer.headers("u-stale")
    async with httpx.AsyncClient(base_url=url) as client:
        first = await client.get("/api/v1/cases/c1", headers=headers)
        second = await client.get("/api/v1/cases/c1", headers=headers)
    assert first.status_code == 200
    assert second.status_code == 200
    assert closing_service.answered == ["GET", "GET"]


async def test_post_on_a_closed_pooled_connection_is_not_sent_twice(
    start_gateway: Callable[..., str], closing_service: ClosingService, token_issuer: TokenIssuer
):
    url = start_gateway(case_url=closing_service.url)
    headers = token_issuer.headers("u-stale-post")
    async with httpx.AsyncClient(base_url=url) as client:
        first = await client.post("/api/v1/cases", headers=headers, json={"title": "a"})
        second = await client.post("/api/v1/cases", headers=headers, json={"title": "b"})
    assert first.status_code == 200
    assert second.status_code == 502
    assert second.json()["code"] == "BAD_GATEWAY"
    assert closing_service.answered == ["POST"]


async def test_a_body_sent_just_after_its_head_arrives_whole(
    start_gateway: Callable[..., str], token_issuer: TokenIssuer
):
    body = b'{"split": "head and body in two writes"}'

    async def split(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(body)
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(split, "127.0.0.1", 0)
    try:
        url = start_gateway(case_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        async with httpx.AsyncClient(base_url=url) as client:
            resp = await client.get("/api/v1/cases/c1", headers=token_issuer.headers("u-split"))
    finally:
        server.close()
    assert resp.status_code == 200
    assert resp.content == body
    assert resp.headers["content-length"] == str(len(body))
