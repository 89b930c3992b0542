"""The merged OpenAPI document: each service's public routes, as the gateway routes them.

Each service's /openapi.json is fetched; only the paths the route table sends to that
service are kept (so /internal/... and /health of the services never appear), and the
components are merged. Cached; a document missing a service is cached briefly only.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from fm_common.app import VERSION
from gateway.proxy import routing
from gateway.state import GatewayState

log = structlog.get_logger(__name__)

_PARTIAL_CACHE_SECONDS = 5.0


async def _fetch(state: GatewayState, name: str, url: str) -> dict[str, Any] | None:
    assert state.http is not None
    try:
        resp = await state.http.get(f"{url.rstrip('/')}/openapi.json", timeout=3.0)
        resp.raise_for_status()
        doc = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.info("openapi.fetch_failed", service=name, error=type(exc).__name__)
        return None
    return doc if isinstance(doc, dict) else None


def own_schema(app: FastAPI) -> dict[str, Any]:
    """The gateway's own routes (/health, /v1/meta/capabilities ...) as OpenAPI."""
    return get_openapi(title="FaultMaven gateway", version=VERSION, routes=app.routes)


def merge(own: dict[str, Any], docs: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "openapi": own.get("openapi", "3.1.0"),
        "info": {
            "title": "FaultMaven API",
            "version": VERSION,
            "description": "Every public route of FaultMaven, as served by the gateway.",
        },
        "paths": {},
        "components": copy.deepcopy(own.get("components") or {}),
    }
    for path, item in (own.get("paths") or {}).items():
        merged["paths"][path] = item
    missing = []
    for name, doc in docs.items():
        if doc is None:
            missing.append(name)
            continue
        for path, item in (doc.get("paths") or {}).items():
            if routing.route(path) == name:
                merged["paths"][path] = item
        for section, entries in (doc.get("components") or {}).items():
            target = merged["components"].setdefault(section, {})
            for key, value in (entries or {}).items():
                if key in target and target[key] != value:
                    log.info("openapi.component_conflict", service=name, component=key)
                    continue
                target[key] = value
    merged["components"].setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    _mark_security(merged["paths"], own_paths=set(own.get("paths") or {}))
    merged["paths"] = dict(sorted(merged["paths"].items()))
    if missing:
        merged["info"]["x-services-unavailable"] = sorted(missing)
    return merged


_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def _mark_security(paths: dict[str, Any], own_paths: set[str]) -> None:
    """Say on each operation whether the gateway wants a bearer token for it."""
    for path, item in paths.items():
        for method, op in item.items():
            if method not in _METHODS or not isinstance(op, dict):
                continue
            public = path in own_paths or routing.is_public(method.upper(), path)
            op["security"] = [] if public else [{"bearerAuth": []}]


async def merged_openapi(state: GatewayState, own: dict[str, Any]) -> dict[str, Any]:
    now = time.monotonic()
    cached = state.cache.get("openapi")
    if cached is not None and cached[0] > now:
        return cached[1]  # type: ignore[no-any-return]
    urls = state.settings.service_urls()
    fetched = await asyncio.gather(*(_fetch(state, n, u) for n, u in urls.items()))
    docs = dict(zip(urls, fetched, strict=True))
    doc = merge(own, docs)
    ttl = state.settings.openapi_cache_seconds
    if any(d is None for d in fetched):
        ttl = min(ttl, _PARTIAL_CACHE_SECONDS)
    state.cache["openapi"] = (now + ttl, doc)
    return doc
