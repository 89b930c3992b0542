"""Service-to-service routes (never routed by the gateway; a bearer token is still required)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from fm_common.auth import CurrentPrincipal
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
        403: {**_ERR, "description": "The token's sid is another session"},
        **_503,
    },
)
async def open_login_session(
    session_id: str,
    store: StoreDep,
    principal: CurrentPrincipal,
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
        404: {**_ERR, "description": "Session gone or bound to another user"},
        **_503,
    },
)
async def bind_session(
    session_id: str, store: StoreDep, principal: CurrentPrincipal
) -> SessionResponse:
    """Bind an anonymous session to the token's user (login with X-Session-Id)."""
    return await service.bind_session(store, principal, session_id)


@router.delete("", responses={401: {**_ERR, "description": "Missing or invalid token"}, **_503})
async def end_all_sessions(store: StoreDep, principal: CurrentPrincipal) -> SessionsEndedResponse:
    """End every session of the token's user (logout of all sessions)."""
    return await service.end_all_sessions(store, principal)
