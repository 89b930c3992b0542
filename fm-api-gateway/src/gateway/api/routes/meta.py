"""Discovery and health: /health, /ready, /metrics, /v1/meta/capabilities."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from fm_common.errors import NotFound
from gateway.domain.capabilities import capabilities
from gateway.domain.health import UNHEALTHY, system_health
from gateway.state import GatewayState

router = APIRouter()


class ComponentHealth(BaseModel):
    status: str
    latency_ms: float
    error: str | None = None


class SystemHealth(BaseModel):
    status: str
    services: dict[str, ComponentHealth]
    critical: list[str]


def _state(request: Request) -> GatewayState:
    return request.app.state.gateway  # type: ignore[no-any-return]


@router.get(
    "/health",
    summary="Health of the gateway, every service and every store",
    response_model=SystemHealth,
    responses={503: {"description": "A critical component is down", "model": SystemHealth}},
    tags=["discovery"],
)
async def health(request: Request) -> JSONResponse:
    """healthy or degraded: 200; unhealthy (a critical component down): 503."""
    body = await system_health(_state(request))
    return JSONResponse(body, status_code=503 if body["status"] == UNHEALTHY else 200)


@router.get("/ready", include_in_schema=False)
async def ready(request: Request) -> JSONResponse:
    """The gateway itself can serve: its Redis answers."""
    state = _state(request)
    try:
        await state.redis.ping()
    except Exception as exc:  # the failing store is the answer
        return JSONResponse(
            {"status": "unready", "service": "gateway", "error": type(exc).__name__},
            status_code=503,
            headers={"Retry-After": str(state.settings.retry_after_seconds)},
        )
    return JSONResponse({"status": "ready", "service": "gateway"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics, only where FM_GATEWAY_METRICS_PUBLIC allows: the gateway is the
    public entry point, and its counters describe every user's traffic (issue 16)."""
    if not _state(request).settings.metrics_public:
        raise NotFound("Not found.")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/meta/capabilities",
    summary="Backend capabilities for the extension and the dashboard",
    tags=["discovery"],
)
async def get_capabilities(request: Request) -> dict[str, Any]:
    """Deployment mode, dashboard URL, feature flags, upload limits and LLM providers."""
    return await capabilities(_state(request))
