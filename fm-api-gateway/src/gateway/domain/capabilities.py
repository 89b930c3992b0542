"""/v1/meta/capabilities: what the extension and the dashboard configure themselves from."""

from __future__ import annotations

import time
from typing import Any

import httpx
import structlog

from fm_common.app import VERSION
from gateway.state import GatewayState

log = structlog.get_logger(__name__)

_FAILED_RETRY_SECONDS = 5.0


async def llm_providers(state: GatewayState) -> list[dict[str, str]]:
    """The agent's configured providers in failover order; [] when the agent is absent."""
    now = time.monotonic()
    cached = state.cache.get("llm_providers")
    if cached is not None and cached[0] > now:
        return cached[1]  # type: ignore[no-any-return]
    url = f"{state.settings.agent_url.rstrip('/')}/v1/meta/capabilities"
    providers: list[dict[str, str]] = []
    ttl = state.settings.capabilities_cache_seconds
    try:
        assert state.http is not None
        resp = await state.http.get(url, timeout=2.0)
        resp.raise_for_status()
        for item in resp.json().get("llmProviders") or []:
            if isinstance(item, dict):
                providers.append({k: str(item.get(k) or "") for k in ("name", "kind", "model")})
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        log.info("capabilities.agent_unavailable", url=url, error=type(exc).__name__)
        providers = []
        ttl = min(ttl, _FAILED_RETRY_SECONDS)
    state.cache["llm_providers"] = (now + ttl, providers)
    return providers


async def capabilities(state: GatewayState) -> dict[str, Any]:
    s = state.settings
    return {
        "deploymentMode": "self-hosted",
        "kbManagement": "dashboard",
        "dashboardUrl": f"{s.effective_public_url}/",
        "features": {
            "extensionKB": False,
            "adminKB": True,
            "teamSharing": s.team_sharing,
            # The name the released extension reads for the same flag.
            "teamWorkspaces": s.team_sharing,
            "caseHistory": True,
            "sso": s.sso,
        },
        "limits": {
            "maxFileBytes": s.max_file_bytes,
            "allowedExtensions": list(s.allowed_extensions),
            "maxDocuments": s.max_documents,
        },
        "llmProviders": await llm_providers(state),
        "version": VERSION,
    }
