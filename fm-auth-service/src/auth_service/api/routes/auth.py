"""Public auth routes (API.md "Auth")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status

from auth_service.api.deps import BindSessionId, ClientAddress, ContextDep, SessionDep, SettingsDep
from auth_service.domain.users import flows
from fm_common.auth import CurrentPrincipal
from fm_common.contracts.auth import (
    AuthConfigResponse,
    AuthTokenResponse,
    DevLoginRequest,
    LoginRequest,
    LogoutResponse,
    RefreshRequest,
    RegisterRequest,
    TokenRefreshResponse,
    UserInfoResponse,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {}}}


Responses = dict[int | str, dict[str, Any]]
_503: Responses = {503: _err("The session service or a store is down (Retry-After)")}


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses={
        403: _err("Registration is turned off"),
        409: _err("Username or email already registered"),
        422: _err("Invalid body, or a password the policy refuses (WEAK_PASSWORD)"),
        429: _err("Too many registrations from this address (Retry-After)"),
        **_503,
    },
)
async def register(
    body: RegisterRequest,
    ctx: ContextDep,
    db: SessionDep,
    session_id: BindSessionId,
    address: ClientAddress,
) -> AuthTokenResponse:
    """Create an account and log it in."""
    return await flows.register(ctx, db, body, session_id, address)


@router.post(
    "/login",
    responses={
        401: _err("Wrong username/email or password (one answer for both)"),
        429: _err("Too many failed logins for this account or address (Retry-After)"),
        **_503,
    },
)
async def login(
    body: LoginRequest,
    ctx: ContextDep,
    db: SessionDep,
    address: ClientAddress,
    session_id: BindSessionId,
) -> AuthTokenResponse:
    """Log in by username or email; opens a session, or binds the X-Session-Id one."""
    return await flows.login(ctx, db, body, address, session_id)


@router.post("/dev-login", responses={404: _err("Dev login is not enabled"), **_503})
async def dev_login(
    body: DevLoginRequest, ctx: ContextDep, db: SessionDep, session_id: BindSessionId
) -> AuthTokenResponse:
    """Passwordless login, only where explicitly enabled for development."""
    return await flows.dev_login(ctx, db, body, session_id)


@router.post(
    "/refresh",
    responses={401: _err("Refresh token invalid, expired, reused or revoked"), **_503},
)
async def refresh(body: RefreshRequest, ctx: ContextDep, db: SessionDep) -> TokenRefreshResponse:
    """Rotate a refresh token: a new access and refresh token; the old one is spent."""
    return await flows.refresh(ctx, db, body)


@router.get(
    "/me",
    responses={
        401: _err("Missing, invalid or revoked token"),
        403: _err("A service token acting for nobody"),
        **_503,
    },
)
async def me(principal: CurrentPrincipal, ctx: ContextDep, db: SessionDep) -> UserInfoResponse:
    """The calling user."""
    return await flows.me(ctx, db, principal)


@router.post(
    "/logout",
    responses={
        401: _err("Missing, invalid or revoked token"),
        403: _err("Service tokens cannot log out"),
        **_503,
    },
)
async def logout(
    principal: CurrentPrincipal,
    ctx: ContextDep,
    scope: Annotated[
        Literal["all", "session"],
        Query(description="all (default): every session of the user; session: this one"),
    ] = "all",
    all: Annotated[bool | None, Query(description="Kept for earlier clients")] = None,
) -> LogoutResponse:
    """Sign out of every session of the account (a per-user revocation watermark plus
    every token and refresh family), or with ?scope=session of this session only."""
    everywhere = scope == "all" if all is None else all
    return await flows.logout(ctx, principal, everywhere=everywhere)


@router.get("/config")
async def config(settings: SettingsDep) -> AuthConfigResponse:
    """Which login flow the client should use."""
    return AuthConfigResponse(
        auth_mode="local",
        supports_registration=settings.registration_enabled,
        register_endpoint="/api/v1/auth/register" if settings.registration_enabled else None,
    )


@router.get("/.well-known/jwks.json")
async def jwks(ctx: ContextDep, response: Response) -> dict[str, Any]:
    """The public keys that verify access tokens."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return ctx.minter.keys.jwks
