"""The gateway's front door: a plain ASGI app, so the proxy path skips Starlette entirely.

Every request gets a request id (accepted or made, echoed, forwarded) and CORS headers.
Public API paths go through the proxy (token check, one Redis round trip for deny-list
and rate limit, size limit, streaming to the owning service); everything else (/health,
/v1/meta/capabilities, /openapi.json, /docs, the dashboard) goes to a small FastAPI app.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI

from fm_common.context import new_request_id, request_id_var
from fm_common.errors import BadRequest, FMError, NotFound, PayloadTooLarge, Unauthorized
from fm_common.observability import LATENCY, REQUESTS
from gateway.config import Settings
from gateway.cors import CorsPolicy
from gateway.proxy import routing
from gateway.proxy.upstream import HOP_BY_HOP
from gateway.state import GatewayState

log = structlog.get_logger(__name__)

_REQUEST_ID_OK = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
_STRIPPED_PREFIXES = (b"x-user-", b"x-internal-")
_NOT_FORWARDED = HOP_BY_HOP | {b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto"}


class HeadersTooLarge(FMError):
    status_code, code, detail = (
        431,
        "REQUEST_HEADER_FIELDS_TOO_LARGE",
        "The request headers are too large.",
    )


def _is_stripped(name: bytes) -> bool:
    return name.startswith(_STRIPPED_PREFIXES)


def error_message(exc: FMError, extra: list[tuple[bytes, bytes]]) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"detail": exc.detail, "code": exc.code, **exc.extra}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-error-code", exc.code.encode()),
    ]
    headers.extend((k.lower().encode(), str(v).encode()) for k, v in exc.headers.items())
    headers.extend(extra)
    return {"type": "http.response.start", "status": exc.status_code, "headers": headers}, body


class GatewayApp:
    """ASGI entry point of the gateway."""

    def __init__(self, settings: Settings, meta_app: FastAPI, state: GatewayState) -> None:
        self.settings = settings
        self.meta_app = meta_app
        self.state = state
        self.cors = CorsPolicy(settings.cors_origins, settings.effective_public_url)
        self.access_log = settings.access_log
        self.max_header_bytes = settings.max_header_bytes
        self._metric_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def lifespan(self) -> Any:
        """Open and close the gateway's resources in-process (uvicorn does it by itself)."""
        return self.meta_app.router.lifespan_context(self.meta_app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "http":
            await self.meta_app(scope, receive, send)  # lifespan (and websocket: refused)
            return
        start = time.perf_counter()
        rid: bytes | None = None
        origin: bytes | None = None
        authorization: bytes | None = None
        content_length: bytes | None = None
        chunked = False
        preflight = False
        forwarded: list[tuple[bytes, bytes]] = []
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name in _NOT_FORWARDED or _is_stripped(name):
                if name == b"x-request-id":
                    rid = value if _REQUEST_ID_OK.match(value) else None
                elif name == b"content-length":
                    content_length = value
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                continue
            if name == b"authorization":
                authorization = value
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
            forwarded.append((name, value))
        rid_s = rid.decode() if rid is not None else new_request_id()
        token = request_id_var.set(rid_s)
        extra = [(b"x-request-id", rid_s.encode()), *self.cors.response_headers(origin)]
        method = scope["method"]
        path = scope["path"]
        service = routing.route(path)
        label = f"proxy:{service}" if service else "gateway"
        status = 500
        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
            await send(message)

        try:
            if header_bytes > self.max_header_bytes:
                raise HeadersTooLarge()
            if preflight and method == "OPTIONS" and origin is not None:
                status = await self._preflight(origin, send, rid_s)
            elif service is not None:
                status = await self._proxy(
                    scope,
                    receive,
                    tracked_send,
                    service,
                    method,
                    path,
                    forwarded,
                    authorization,
                    content_length,
                    chunked,
                    extra,
                    rid_s,
                )
            elif path.startswith(("/api/", "/internal")) or path in ("/api", "/internal"):
                raise NotFound("No such route.")
            else:
                label = await self._meta(scope, receive, tracked_send, extra)
        except FMError as exc:
            if started:
                log.warning("http.failed_after_start", path=path[:256], code=exc.code)
            else:
                status = exc.status_code
                await self._send_error(send, exc, extra)
        except OSError as exc:
            # The client or the upstream went away mid-stream; nothing left to answer.
            log.info("http.connection_lost", path=path[:256], error=repr(exc))
        except Exception:
            # A bug, not a client error: logged with its traceback, answered in the error
            # model without one.
            log.exception("http.unhandled_error", path=path[:256])
            if not started:
                status = 500
                await self._send_error(send, FMError(), extra)
        finally:
            elapsed = time.perf_counter() - start
            if path not in _QUIET_PATHS:
                self._observe(method, label, status, elapsed)
                # Successes are logged by the service that served them (same request
                # id); the gateway logs what it refused or failed, unless asked for all.
                if self.access_log or status >= 400:
                    log.info(
                        "http.request",
                        method=method,
                        path=path[:256],
                        status=status,
                        route=label,
                        duration_ms=round(elapsed * 1000, 2),
                    )
            request_id_var.reset(token)

    def _observe(self, method: str, label: str, status: int, elapsed: float) -> None:
        key = (method, label, status)
        children = self._metric_children.get(key)
        if children is None:
            children = (
                REQUESTS.labels("gateway", method, label, str(status)),
                LATENCY.labels("gateway", method, label),
            )
            if len(self._metric_children) < 2048:
                self._metric_children[key] = children
        children[0].inc()
        children[1].observe(elapsed)

    async def _send_error(self, send: Any, exc: FMError, extra: list[tuple[bytes, bytes]]) -> None:
        start, body = error_message(exc, extra)
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _preflight(self, origin: bytes, send: Any, rid: str) -> int:
        if not self.cors.allows(origin):
            exc = FMError("This origin may not call the API.", code="CORS_ORIGIN_DENIED")
            exc.status_code = 403
            await self._send_error(send, exc, [(b"x-request-id", rid.encode())])
            return 403
        headers = [
            *self.cors.preflight_headers(origin),
            (b"x-request-id", rid.encode()),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return 204

    async def _meta(self, scope: dict[str, Any], receive: Any, send: Any, extra: list) -> str:
        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message["headers"] = headers + extra
            await send(message)

        await self.meta_app(scope, receive, send_with_headers)
        route = scope.get("route")
        return f"gateway:{getattr(route, 'path', 'unmatched')}"

    async def _proxy(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        service: str,
        method: str,
        path: str,
        forwarded: list[tuple[bytes, bytes]],
        authorization: bytes | None,
        content_length: bytes | None,
        chunked: bool,
        extra: list[tuple[bytes, bytes]],
        rid: str,
    ) -> int:
        if routing.has_dot_segment(path):
            raise BadRequest("Paths may not contain '.' or '..' segments.")
        state = self.state
        settings = self.settings
        token = None
        if authorization is not None:
            scheme, _, value = authorization.partition(b" ")
            if scheme.lower() == b"bearer" and value.strip():
                token = value.strip().decode("latin-1")
        public = routing.is_public(method, path)
        client = scope.get("client")
        address = client[0] if client else "unknown"
        # Public routes ignore a token (a stale one must not block a login), except
        # POST /sessions, which verifies it when sent (API.md).
        if token is not None and (not public or path.rstrip("/") == "/api/v1/sessions"):
            principal = await state.tokens.verify(token)  # type: ignore[union-attr]
            identity = f"u:{principal.user_id or principal.jti}"
            await state.limiter.check(  # type: ignore[union-attr]
                identity, settings.rate_limit_per_window, principal.jti, principal
            )
        elif public:
            await state.limiter.check(  # type: ignore[union-attr]
                f"ip:{address}", settings.public_rate_limit_per_window, None
            )
        else:
            raise Unauthorized(
                "A bearer token is required.", headers={"WWW-Authenticate": "Bearer"}
            )

        max_body = (
            settings.max_upload_bytes
            if routing.is_upload(method, path)
            else settings.max_body_bytes
        )
        if method == "POST" and path == routing.KNOWLEDGE_UPLOAD:
            # The knowledge service's own limit (capabilities' maxFileBytes) plus the form
            # around the file: refused here, not by a service that hangs up mid-body
            # (which the client saw as a 502).
            max_body = min(max_body, settings.max_file_bytes + routing.FORM_OVERHEAD_BYTES)
        length = None
        if content_length is not None:
            try:
                length = int(content_length)
            except ValueError:
                raise BadRequest("Content-Length is not a number.") from None
            if length > max_body:
                raise PayloadTooLarge(f"The request body is larger than {max_body} bytes.")
        forwarded.append((b"x-request-id", rid.encode()))
        forwarded.append((b"x-forwarded-for", address.encode()))
        forwarded.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        target = scope.get("raw_path") or path.encode()
        query = scope.get("query_string")
        if query:
            target = target + b"?" + query
        return await state.upstreams[service].forward(
            method,
            target,
            forwarded,
            receive,
            send,
            content_length=length,
            chunked=chunked and length is None,
            max_body=max_body,
            response_headers=extra,
        )
