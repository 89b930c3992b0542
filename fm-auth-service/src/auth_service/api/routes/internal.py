"""Service-to-service routes (never routed by the gateway)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from auth_service.api.deps import ContextDep, SessionDep
from auth_service.domain.users import flows
from fm_common.contracts.auth import ServiceTokenRequest, ServiceTokenResponse

router = APIRouter(prefix="/internal/v1", tags=["internal"])


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {}}}


@router.post(
    "/service-token",
    responses={401: _err("Wrong client credentials"), 404: _err("No such user to act for")},
)
async def service_token(
    body: ServiceTokenRequest, ctx: ContextDep, db: SessionDep
) -> ServiceTokenResponse:
    """A short-lived service token for the worker, acting on behalf of a user."""
    return await flows.service_token(ctx, db, body)
