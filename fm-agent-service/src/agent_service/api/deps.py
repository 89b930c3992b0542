"""Dependency aliases of the agent's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agent_service.runtime import AgentRuntime


def get_runtime(request: Request) -> AgentRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[AgentRuntime, Depends(get_runtime)]
