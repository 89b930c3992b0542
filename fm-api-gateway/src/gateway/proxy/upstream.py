"""A keep-alive HTTP/1.1 client per upstream service, built for pass-through.

asyncio streams carry the bytes and httptools (the parser uvicorn uses) reads the
responses. Request bodies are written to the upstream as they arrive from the client;
response bodies are sent to the client as they arrive from the upstream, so uploads,
SSE and large downloads are never buffered. General-purpose clients (httpx, aiohttp)
spend several times more Python per request on things a proxy does not need.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httptools
import structlog

from fm_common.errors import (
    BadGateway,
    FMError,
    GatewayTimeout,
    PayloadTooLarge,
    Unavailable,
)

log = structlog.get_logger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Never passed on in either direction (RFC 9110 section 7.6.1), plus headers we set.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"host",
        b"content-length",
    }
)
_DROP_FROM_RESPONSE = HOP_BY_HOP | {b"date", b"server", b"x-request-id"}
_READ_SIZE = 65536
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A connection used this recently is not one the upstream is closing for idleness.
_FRESH_SECONDS = 1.0


class RequestTooLarge(PayloadTooLarge):
    """The client's streamed body passed the limit while it was being forwarded."""


class RequestStalled(FMError):
    status_code, code, detail = 408, "REQUEST_TIMEOUT", "The request body stopped arriving."


class _Response:
    """httptools callbacks, collecting one response."""

    __slots__ = ("chunks", "done", "headers", "headers_done", "keep_alive", "length", "parser")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.length = -1
        self.headers_done = False
        self.chunks: list[bytes] = []
        self.done = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" and value.isdigit():
            self.length = int(value)
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Read here: llhttp forgets it once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Conn:
    __slots__ = ("idle_since", "reader", "timed_out", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.timed_out = False

    def usable(self, now: float, idle_ttl: float) -> bool:
        return (
            now - self.idle_since < idle_ttl
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class _ClientGone(OSError):
    """The client left in the middle of its upload."""


class _StaleConnection(Exception):
    """A reused connection closed before any response byte: safe to retry once."""


class Upstream:
    """Forwards requests to one service over a pool of keep-alive connections."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        connect_timeout: float,
        response_timeout: float,
        stream_idle_timeout: float,
        max_idle: int = 64,
        idle_ttl: float = 4.0,
        retry_after: int = 5,
    ) -> None:
        parts = urlsplit(base_url)
        self.name = name
        self.host = parts.hostname or "127.0.0.1"
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.ssl else 80)
        default_port = (parts.scheme == "https" and self.port == 443) or self.port == 80
        self.host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self.max_idle = max_idle
        # Below uvicorn's default keep-alive (5 s), so a pooled connection is rarely
        # one the upstream is closing.
        self.idle_ttl = idle_ttl
        self.retry_after = retry_after
        self._idle: collections.deque[_Conn] = collections.deque()
        # Connections waiting for a response head -> deadline, swept by one timer
        # (a timeout context per request costs ~15 us).
        self._waiting: dict[_Conn, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = min(0.25, response_timeout / 4)

    async def _open(self) -> _Conn:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl, limit=_READ_SIZE
                )
        except (OSError, TimeoutError) as exc:
            log.warning("upstream.unavailable", service=self.name, error=repr(exc))
            raise Unavailable(
                f"The {self.name} service is unavailable; retry later.",
                code="UPSTREAM_UNAVAILABLE",
                retry_after=self.retry_after,
            ) from exc
        return _Conn(reader, writer)

    def _take_idle(self, max_idle_age: float) -> _Conn | None:
        now = time.monotonic()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable(now, max_idle_age):
                return conn
            if conn.usable(now, self.idle_ttl):
                # Fine for a request that may be retried; keep it for one.
                idle.appendleft(conn)
                return None
            conn.close()
        return None

    def _arm(self, conn: _Conn) -> None:
        self._waiting[conn] = time.monotonic() + self.response_timeout
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for conn, deadline in list(self._waiting.items()):
            if deadline <= now:
                del self._waiting[conn]
                conn.timed_out = True
                conn.writer.transport.abort()
        if self._waiting:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)

    def _release(self, conn: _Conn) -> None:
        if len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def forward(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        *,
        content_length: int | None,
        chunked: bool,
        max_body: int,
        response_headers: list[tuple[bytes, bytes]],
    ) -> int:
        """Send the request on, stream the answer back; return the upstream's status."""
        body0 = b""
        more_body = False
        if content_length or chunked:
            message = await receive()
            body0 = message.get("body", b"")
            more_body = message.get("more_body", False)
            if len(body0) > max_body:
                raise RequestTooLarge()
        # A body we hold whole can be sent again on a fresh connection.
        if not more_body:
            declared = content_length is not None or chunked or body0
            content_length = len(body0) if declared else None
            chunked = False
        head = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), target, self.host_header)]
        for name, value in headers:
            head.append(b"%s: %s\r\n" % (name, value))
        if chunked:
            head.append(b"transfer-encoding: chunked\r\n\r\n")
        elif content_length is not None:
            head.append(b"content-length: %d\r\n\r\n" % content_length)
        else:
            head.append(b"\r\n")
        head_bytes = b"".join(head)

        # Only a request that is safe to send twice may be retried on a fresh connection
        # when a reused one turns out closed; others take only a recently used one.
        replayable = not more_body and method in _IDEMPOTENT
        conn = self._take_idle(self.idle_ttl if replayable else _FRESH_SECONDS)
        while True:
            reused = conn is not None
            if conn is None:
                conn = await self._open()
            try:
                resp, parser = await self._exchange(
                    conn,
                    head_bytes,
                    body0,
                    more_body,
                    chunked,
                    receive,
                    max_body,
                    reused,
                    method == "HEAD",
                )
                break
            except _StaleConnection:
                conn.close()
                conn = None
                if not replayable:
                    raise BadGateway(f"The {self.name} service closed the connection.") from None
                continue
            except BaseException:
                conn.close()
                raise
        return await self._relay(conn, resp, parser, method, receive, send, response_headers)

    async def _exchange(
        self,
        conn: _Conn,
        head_bytes: bytes,
        body0: bytes,
        more_body: bool,
        chunked: bool,
        receive: Receive,
        max_body: int,
        reused: bool,
        head_only: bool,
    ) -> tuple[_Response, httptools.HttpResponseParser]:
        writer = conn.writer
        reader = conn.reader
        resp = _Response()
        parser = httptools.HttpResponseParser(resp)
        resp.parser = parser
        try:
            if chunked:
                writer.write(head_bytes)
                if body0:
                    writer.write(b"%x\r\n%s\r\n" % (len(body0), body0))
            else:
                writer.write(head_bytes + body0 if body0 else head_bytes)
            upload_cut = False
            if more_body:
                # A slow upload is fine; a stalled one is not (idle timeout per chunk).
                try:
                    await self._stream_body(writer, receive, chunked, len(body0), max_body)
                except ConnectionError:
                    # The service stopped reading: it may have answered already (its own
                    # 413, a 401); what it said is read below and passed on.
                    upload_cut = True
            self._arm(conn)
            received = False
            while not resp.headers_done:
                data = await reader.read(_READ_SIZE)
                if not data:
                    if conn.timed_out:
                        raise self._timeout()
                    if reused and not received and not more_body:
                        raise _StaleConnection()
                    raise BadGateway(f"The {self.name} service closed the connection.")
                received = True
                parser.feed_data(data)
            # A small body whose head came alone is a moment behind: wait for it here
            # and answer in one piece, rather than set up streaming for it.
            while not resp.done and 0 <= resp.length <= _READ_SIZE and not head_only:
                data = await reader.read(_READ_SIZE)
                if not data:
                    if conn.timed_out:
                        raise self._timeout()
                    raise BadGateway(f"The {self.name} service ended its answer early.")
                parser.feed_data(data)
            if upload_cut:
                resp.keep_alive = False
        except ConnectionError as exc:
            if conn.timed_out:
                raise self._timeout() from None
            if reused and not more_body:
                raise _StaleConnection() from exc
            raise BadGateway(f"The {self.name} service closed the connection.") from exc
        except httptools.HttpParserError as exc:
            log.warning("upstream.bad_response", service=self.name, error=repr(exc))
            raise BadGateway(f"The {self.name} service answered badly.") from exc
        finally:
            self._waiting.pop(conn, None)
        return resp, parser

    def _timeout(self) -> GatewayTimeout:
        log.warning("upstream.timeout", service=self.name, timeout=self.response_timeout)
        return GatewayTimeout(f"The {self.name} service did not answer in time.")

    async def _stream_body(
        self,
        writer: asyncio.StreamWriter,
        receive: Receive,
        chunked: bool,
        sent: int,
        max_body: int,
    ) -> None:
        more = True
        while more:
            try:
                async with asyncio.timeout(self.stream_idle_timeout):
                    message = await receive()
            except TimeoutError:
                raise RequestStalled() from None
            if message["type"] == "http.disconnect":
                raise _ClientGone("the client went away during its upload")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            sent += len(chunk)
            if sent > max_body:
                raise RequestTooLarge()
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                async with asyncio.timeout(self.stream_idle_timeout):
                    await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _relay(
        self,
        conn: _Conn,
        resp: _Response,
        parser: httptools.HttpResponseParser,
        method: str,
        receive: Receive,
        send: Send,
        response_headers: list[tuple[bytes, bytes]],
    ) -> int:
        status = parser.get_status_code()
        headers = [h for h in resp.headers if h[0] not in _DROP_FROM_RESPONSE]
        length = None
        for name, value in resp.headers:
            if name == b"content-length":
                length = value
        if length is not None:
            headers.append((b"content-length", length))
        headers.extend(response_headers)
        # A HEAD answer has no body, whatever its Content-Length says.
        head_only = method == "HEAD"
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if head_only or resp.done:
            body = b"" if head_only else b"".join(resp.chunks)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            self._finish(conn, resp, resp.done and not head_only)
            return status
        # The body comes in several reads (a download, an SSE stream): watch for the
        # client leaving, since uvicorn drops sends to a gone client silently and an
        # endless stream would otherwise be read forever.
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(self._watch_disconnect(receive, conn, gone))
        try:
            await self._pump(conn, resp, parser, send, gone)
        except BaseException:
            conn.close()
            raise
        finally:
            watcher.cancel()
        if gone.is_set():
            conn.close()
            log.info("upstream.client_disconnected", service=self.name)
        else:
            self._finish(conn, resp, True)
        return status

    @staticmethod
    async def _watch_disconnect(receive: Receive, conn: _Conn, gone: asyncio.Event) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                conn.close()
                return

    async def _pump(
        self,
        conn: _Conn,
        resp: _Response,
        parser: httptools.HttpResponseParser,
        send: Send,
        gone: asyncio.Event,
    ) -> None:
        reader = conn.reader
        while True:
            chunks = resp.chunks
            if chunks:
                resp.chunks = []
                last = len(chunks) - 1
                for i, chunk in enumerate(chunks):
                    await send(
                        {
                            "type": "http.response.body",
                            "body": chunk,
                            "more_body": not (resp.done and i == last),
                        }
                    )
            if resp.done:
                if not chunks:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            try:
                async with asyncio.timeout(self.stream_idle_timeout):
                    data = await reader.read(_READ_SIZE)
            except TimeoutError:
                log.warning("upstream.stream_idle_timeout", service=self.name)
                raise
            except ConnectionError:
                if gone.is_set():
                    return
                raise
            if gone.is_set():
                return
            if not data:
                log.warning("upstream.truncated_response", service=self.name)
                raise BadGateway(f"The {self.name} service ended its answer early.")
            parser.feed_data(data)

    def _finish(self, conn: _Conn, resp: _Response, complete: bool) -> None:
        resp.parser = None  # no reference cycle left behind
        if complete and resp.keep_alive:
            self._release(conn)
        else:
            conn.close()
