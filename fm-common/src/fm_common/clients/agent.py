"""Typed client of the agent service (the gateway reads its capabilities)."""

from __future__ import annotations

from fm_common.clients.base import ServiceClient
from fm_common.contracts.agent import AgentCapabilities


class AgentClient(ServiceClient):
    service = "agent"

    async def capabilities(self) -> AgentCapabilities:
        """The provider chain (names, kinds, models; never keys). No token needed."""
        return await self.get_model("/v1/meta/capabilities", AgentCapabilities)
