"""Request id, access log and Prometheus metrics middleware, and /health /ready /metrics.

Written as plain ASGI (not BaseHTTPMiddleware) so streaming responses pass untouched and
the per-request cost stays small.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fm_common.context import new_request_id, request_id_var

log = structlog.get_logger("fm_common.http")

REQUESTS = Counter(
    "fm_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "fm_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# The cyclic garbage collector stops every thread of the process while it runs: a
# collection of the oldest generation walks every tracked object, tens of milliseconds
# in a process holding a large index (the knowledge service's BM25 indexes).
GC_PAUSE = Histogram(
    "fm_gc_pause_seconds",
    "Pauses of the cyclic garbage collector",
    ["service", "generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
_gc_started: list[float] = []


def install_gc_metrics(service: str) -> None:
    """Time every collection of the garbage collector (`fm_gc_pause_seconds`); once."""
    if any(getattr(cb, "_fm_service", None) for cb in gc.callbacks):
        return
    observe = [GC_PAUSE.labels(service, str(g)).observe for g in range(3)]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_started.append(time.perf_counter())
        elif _gc_started:
            observe[info["generation"]](time.perf_counter() - _gc_started.pop())

    on_gc._fm_service = service  # type: ignore[attr-defined]
    gc.callbacks.append(on_gc)


_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path or "unmatched"


class RequestContextMiddleware:
    """Accept or make X-Request-ID, echo it, bind it for logs, count and time the request."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_OK.match(candidate):
                    rid = candidate
                break
        rid = rid or new_request_id()
        token = request_id_var.set(rid)
        structlog.contextvars.bind_contextvars(request_id=rid)
        start = time.perf_counter()
        status = 500
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                headers.append(rid_header)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            path = scope.get("path", "")
            if path not in _QUIET_PATHS:
                route = _route_template(scope)
                method = scope.get("method", "")
                REQUESTS.labels(self.service, method, route, str(status)).inc()
                LATENCY.labels(self.service, method, route).observe(elapsed)
                log.info(
                    "http.request",
                    method=method,
                    path=path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()
            request_id_var.reset(token)


ReadinessCheck = Callable[[], Awaitable[Any]]


def health_router(
    service: str, checks: Callable[[], Mapping[str, ReadinessCheck]] | None = None
) -> APIRouter:
    """/health (liveness), /ready (every store reachable) and /metrics (Prometheus)."""
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "service": service}

    @router.get("/ready", summary="Readiness: every store this service needs is reachable")
    async def ready() -> JSONResponse:
        results: dict[str, dict[str, Any]] = {}
        ok = True
        for name, check in (checks() if checks else {}).items():
            start = time.perf_counter()
            try:
                await asyncio.wait_for(check(), timeout=2.0)
                results[name] = {"status": "healthy"}
            except Exception as exc:  # a failing store is the answer here, not an error
                ok = False
                results[name] = {"status": "unhealthy", "error": type(exc).__name__}
            results[name]["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
        body = {"status": "ready" if ok else "unready", "service": service, "checks": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_observability(
    app: FastAPI, service: str, checks: Callable[[], Mapping[str, ReadinessCheck]] | None = None
) -> None:
    app.include_router(health_router(service, checks))
    app.add_middleware(RequestContextMiddleware, service=service)
