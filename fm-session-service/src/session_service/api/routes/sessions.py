"""Public session routes (API.md "Sessions")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from fm_common.auth import CurrentPrincipal, OptionalPrincipal
from fm_common.contracts.session import (
    SessionCreateRequest,
    SessionListResponse,
    SessionResponse,
)
from session_service.api.deps import ClientAddress, SettingsDep, StoreDep
from session_service.domain.sessions import service

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

_ERR: dict[str, Any] = {"description": "Error", "content": {"application/json": {}}}
Responses = dict[int | str, dict[str, Any]]
_401: Responses = {401: {**_ERR, "description": "Missing or invalid token"}}
_404: Responses = {404: {**_ERR, "description": "Session expired, unknown or not the caller's"}}
_503: Responses = {503: {**_ERR, "description": "Redis is unavailable (Retry-After)"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        **_401,
        429: {**_ERR, "description": "Too many sessions from this address or user"},
        **_503,
    },
)
async def create_session(
    store: StoreDep,
    settings: SettingsDep,
    principal: OptionalPrincipal,
    address: ClientAddress,
    request: Annotated[SessionCreateRequest | None, Body()] = None,
) -> SessionResponse:
    """Create a session (token optional), or resume the active one of the same client_id."""
    await service.check_creation_rate(
        store,
        principal,
        address,
        limit=settings.create_limit_per_address,
        window_seconds=settings.create_limit_window_seconds,
    )
    return await service.open_session(store, principal, request or SessionCreateRequest())


@router.get("", responses={**_401, **_503})
async def list_sessions(
    store: StoreDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> SessionListResponse:
    """The caller's active sessions."""
    return await service.list_sessions(store, principal, limit=limit, offset=offset)


@router.get("/{session_id}", responses={**_401, **_404, **_503})
async def get_session(
    session_id: str, store: StoreDep, principal: CurrentPrincipal
) -> SessionResponse:
    """One session of the caller; 404 when expired or not the caller's."""
    return await service.get_session(store, principal, session_id)


@router.post(
    "/{session_id}/heartbeat",
    responses={
        401: {
            **_ERR,
            "description": "SESSION_EXPIRED once the session is gone (ended, expired, unknown "
            "or another user's), else a bad token",
        },
        **_503,
    },
)
async def heartbeat(
    session_id: str, store: StoreDep, principal: CurrentPrincipal
) -> SessionResponse:
    """Extend the session's TTL."""
    return await service.heartbeat(store, principal, session_id)


@router.delete(
    "/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**_401, **_404, **_503}
)
async def delete_session(session_id: str, store: StoreDep, principal: CurrentPrincipal) -> Response:
    """End a session of the caller."""
    await service.end_session(store, principal, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
