"""Service-to-service routes (never routed by the gateway): the auth service's own service
tokens only, acting for the user (and naming the login session); a user's token is 403
SERVICE_ONLY (ADR 0135)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from fm_common.auth import ServicePrincipal
from fm_common.contracts.session import (
    SessionCreateRequest,
    SessionResponse,
    SessionsEndedResponse,
)
from session_service.api.deps import StoreDep
from session_service.domain.sessions import service

router = APIRouter(prefix="/internal/v1/sessions", tags=["internal"])

_ERR: dict[str, Any] = {"description": "Error", "content": {"application/json": {}}}
Responses = dict[int | str, dict[str, Any]]
_503: Responses = {503: {**_ERR, "description": "Redis is unavailable (Retry-After)"}}


@router.put(
    "/{session_id}",
    responses={
        401: {**_ERR, "description": "Missing or invalid token"},
        403: {**_ERR, "description": "Not a service token, or its sid is another session"},
        **_503,
    },
)
async def open_login_session(
    session_id: str,
    store: StoreDep,
    principal: ServicePrincipal,
    request: Annotated[SessionCreateRequest | None, Body()] = None,
) -> SessionResponse:
    """Create the login session named by the token's sid (idempotent)."""
    return await service.open_login_session(
        store, principal, session_id, request or SessionCreateRequest()
    )


@router.put(
    "/{session_id}/user",
    responses={
        401: {**_ERR, "description": "Missing or invalid token"},
        403: {**_ERR, "description": "Not a service token"},
        404: {**_ERR, "description": "Session gone or bound to another user"},
        **_503,
    },
)
async def bind_session(
    session_id: str, store: StoreDep, principal: ServicePrincipal
) -> SessionResponse:
    """Bind an anonymous session to the token's user (login with X-Session-Id)."""
    return await service.bind_session(store, principal, session_id)


@router.delete(
    "",
    responses={
        401: {**_ERR, "description": "Missing or invalid token"},
        403: {**_ERR, "description": "Not a service token"},
        **_503,
    },
)
async def end_all_sessions(store: StoreDep, principal: ServicePrincipal) -> SessionsEndedResponse:
    """End every session of the token's user (logout of all sessions)."""
    return await service.end_all_sessions(store, principal)
