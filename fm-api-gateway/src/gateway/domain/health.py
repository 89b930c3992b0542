"""/health of the whole system: every service's /health, Redis and Chroma, concurrently.

A failing critical component (settings.critical_components; Redis and auth by default:
without them no request can be authenticated) makes the system unhealthy (503); any
other failing component makes it degraded (still 200: what does not need it works).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog

from fm_common.heartbeat import heartbeat_key
from gateway.state import GatewayState

log = structlog.get_logger(__name__)

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


async def _timed(check: Callable[[], Awaitable[Any]], timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    result: dict[str, Any]
    try:
        async with asyncio.timeout(timeout):
            await check()
        result = {"status": HEALTHY}
    except TimeoutError:
        result = {"status": UNHEALTHY, "error": "timeout"}
    except Exception as exc:  # a failing component is the answer here, reported by name
        result = {"status": UNHEALTHY, "error": type(exc).__name__}
    result["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return result


def _http_check(http: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        resp = await http.get(url)
        if resp.status_code != 200:
            raise RuntimeError(f"status {resp.status_code}")

    return check


def _heartbeat_check(state: GatewayState, component: str) -> Callable[[], Awaitable[None]]:
    """A process without HTTP (worker, beat) is alive while its Redis key is fresh."""

    async def check() -> None:
        if not await state.redis.exists(heartbeat_key(component)):
            raise HeartbeatMissing(component)

    return check


class HeartbeatMissing(Exception):
    """No recent heartbeat: the process is down (or cannot reach Redis)."""


async def system_health(state: GatewayState) -> dict[str, Any]:
    """The system's health, computed at most once per `health_cache_seconds`."""
    now = time.monotonic()
    cached = state.cache.get("health")
    if cached is not None and cached[0] > now:
        return cached[1]  # type: ignore[no-any-return]
    # Callers arriving while a check runs share it rather than starting their own.
    running = state.health_running
    if running is None:
        running = asyncio.ensure_future(_check_all(state))
        state.health_running = running
        try:
            body = await asyncio.shield(running)
        finally:
            state.health_running = None
        state.cache["health"] = (time.monotonic() + state.settings.health_cache_seconds, body)
        return body
    return await asyncio.shield(running)


async def _check_all(state: GatewayState) -> dict[str, Any]:
    settings = state.settings
    http = state.http
    assert http is not None
    checks: dict[str, Callable[[], Awaitable[Any]]] = {
        name: _http_check(http, f"{url.rstrip('/')}/health")
        for name, url in settings.service_urls().items()
    }
    checks["redis"] = state.redis.ping
    for component in settings.health_heartbeats:
        checks[component] = _heartbeat_check(state, component)
    checks["chroma"] = _http_check(http, f"{settings.chroma_url.rstrip('/')}/api/v2/heartbeat")
    names = list(checks)
    results = await asyncio.gather(*(_timed(checks[n], settings.health_timeout) for n in names))
    services: dict[str, dict[str, Any]] = {"gateway": {"status": HEALTHY, "latency_ms": 0.0}}
    services.update(zip(names, results, strict=True))
    failing = [n for n, r in services.items() if r["status"] != HEALTHY]
    critical = set(settings.critical_components)
    if any(n in critical for n in failing):
        status = UNHEALTHY
    elif failing:
        status = DEGRADED
    else:
        status = HEALTHY
    if failing:
        log.info("health.failing", components=failing, status=status)
    return {"status": status, "services": services, "critical": sorted(critical)}
