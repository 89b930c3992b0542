"""The agent's capabilities, read by the gateway for its public /v1/meta/capabilities.

Not under /internal: it takes no token (the gateway holds no service credential) and says
only what the gateway publishes anyway (provider names, kinds, models; never a key).
"""

from __future__ import annotations

from fastapi import APIRouter

from agent_service.api.deps import RuntimeDep
from fm_common.contracts.agent import AgentCapabilities, LLMProviderInfo

router = APIRouter(tags=["meta"])


@router.get("/v1/meta/capabilities", response_model=AgentCapabilities)
async def capabilities(rt: RuntimeDep) -> AgentCapabilities:
    """The provider chain in failover order (names, kinds, models; never keys)."""
    providers = [LLMProviderInfo(**p) for p in rt.chain.describe()]
    return AgentCapabilities(llmProviders=providers, degraded=not providers)
