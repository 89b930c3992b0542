"""Internal routes for other services (the gateway's capabilities)."""

from __future__ import annotations

from fastapi import APIRouter

from agent_service.api.deps import RuntimeDep
from fm_common.contracts.agent import AgentCapabilities, LLMProviderInfo

router = APIRouter(tags=["internal"])


@router.get("/internal/v1/capabilities", response_model=AgentCapabilities)
async def capabilities(rt: RuntimeDep) -> AgentCapabilities:
    """The provider chain in failover order (names, kinds, models; never keys)."""
    providers = [LLMProviderInfo(**p) for p in rt.chain.describe()]
    return AgentCapabilities(llmProviders=providers, degraded=not providers)
