"""What the auth routes run: users and tokens together, and the session service.

Logins open sessions, logouts end them: the cross-service work of the auth service
(docs/architecture.md "Inside a service"), on the rules of `users.service` and
`tokens.service`.

A login mints its access token for a chosen session id (`sid`) and has the session
service open (or bind) exactly that session, forwarding the new token so the session
service verifies who it is for. Only when the session exists does the client get tokens;
if the session service is down the login is a 503 and the user row change rolls back.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.config import Settings
from auth_service.domain.tokens import service as tokens
from auth_service.domain.tokens.issuer import TokenMinter
from auth_service.domain.tokens.repository import TokenStore
from auth_service.domain.users import service as users
from auth_service.domain.users.models import User
from auth_service.domain.users.passwords import PasswordHasher
from auth_service.domain.users.repository import UserRepository
from auth_service.domain.users.throttle import LoginThrottle, RegistrationLimit
from fm_common.auth import Principal
from fm_common.clients.session import SessionClient
from fm_common.contracts.auth import (
    AuthTokenResponse,
    DevLoginRequest,
    LoginRequest,
    LogoutResponse,
    RefreshRequest,
    RegisterRequest,
    ServiceTokenRequest,
    ServiceTokenResponse,
    TokenRefreshResponse,
    UserInfoResponse,
)
from fm_common.errors import Forbidden, NotFound

log = structlog.get_logger(__name__)

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


@dataclass(frozen=True)
class AuthContext:
    """What the flows need, built once per app in the lifespan."""

    settings: Settings
    minter: TokenMinter
    store: TokenStore
    hasher: PasswordHasher
    throttle: LoginThrottle
    sessions: SessionClient
    registrations: RegistrationLimit | None = None

    # The bootstrap admin, once its account is proven (users.bootstrap_admin).
    bootstrap_admins: frozenset[str] = frozenset()

    @property
    def admins(self) -> frozenset[str]:
        return self.settings.admin_username_set | self.bootstrap_admins


# Seconds a service token the auth service mints for its own session-service call lives.
_OWN_SERVICE_TOKEN_SECONDS = 60


def _session_service_token(ctx: AuthContext, user_id: str, session_id: str | None = None) -> str:
    """The auth service's own service token for the session service's internal routes,
    acting for `user_id` (and naming the login session): they refuse users' tokens."""
    return ctx.minter.service(
        client_id="auth",
        on_behalf_of=user_id,
        ttl=_OWN_SERVICE_TOKEN_SECONDS,
        session_id=session_id,
    ).token


async def _open_session(
    ctx: AuthContext, user: User, bind_session_id: str | None
) -> AuthTokenResponse:
    roles = users.roles_of(user, ctx.admins)
    session = None
    access = None
    if bind_session_id and _SESSION_ID.match(bind_session_id):
        access = ctx.minter.access(
            user_id=user.id, username=user.username, roles=roles, session_id=bind_session_id
        )
        session = await ctx.sessions.bind(
            bind_session_id, _session_service_token(ctx, user.id, bind_session_id)
        )
        if session is None:
            # Gone or someone else's: this token named a session it will not have.
            await ctx.store.deny({access.jti: float(access.expires_at)})
            log.info("auth.session_not_bound", session_id=bind_session_id)
    if session is None:
        sid = str(uuid.uuid4())
        access = ctx.minter.access(
            user_id=user.id, username=user.username, roles=roles, session_id=sid
        )
        session = await ctx.sessions.open_login_session(
            sid, _session_service_token(ctx, user.id, sid)
        )
    assert access is not None
    pair = await tokens.issue_pair(
        ctx.minter, ctx.store, access, user_id=user.id, session_id=session.session_id
    )
    log.info("auth.logged_in", user_id=user.id, session_id=session.session_id)
    return AuthTokenResponse(
        access_token=pair.access.token,
        expires_in=ctx.minter.access_ttl,
        refresh_token=pair.refresh.token,
        refresh_expires_in=ctx.minter.refresh_ttl,
        session_id=session.session_id,
        user=users.profile(user, ctx.admins),
    )


async def register(
    ctx: AuthContext,
    db: AsyncSession,
    body: RegisterRequest,
    bind_session_id: str | None,
    address: str = "",
) -> AuthTokenResponse:
    """Create an account and log it in (at most so many per client address and window)."""
    if ctx.registrations is not None:
        await ctx.registrations.check(address)
    user = await users.register_user(
        db,
        ctx.hasher,
        body,
        enabled=ctx.settings.registration_enabled,
        min_length=ctx.settings.password_min_length,
        min_score=ctx.settings.password_min_score,
    )
    answer = await _open_session(ctx, user, bind_session_id)
    if ctx.registrations is not None:
        await ctx.registrations.record(address)
    return answer


async def login(
    ctx: AuthContext,
    db: AsyncSession,
    body: LoginRequest,
    address: str,
    bind_session_id: str | None,
) -> AuthTokenResponse:
    """Password login by username or email; opens (or binds) a session."""
    user = await users.authenticate(db, ctx.hasher, ctx.throttle, body, address)
    return await _open_session(ctx, user, bind_session_id)


async def dev_login(
    ctx: AuthContext, db: AsyncSession, body: DevLoginRequest, bind_session_id: str | None
) -> AuthTokenResponse:
    """Passwordless login for development only; 404 unless explicitly enabled."""
    if not ctx.settings.dev_login_enabled:
        raise NotFound("Not found.")
    user = await users.dev_user(db, body)
    return await _open_session(ctx, user, bind_session_id)


async def refresh(ctx: AuthContext, db: AsyncSession, body: RefreshRequest) -> TokenRefreshResponse:
    async def identity(user_id: str) -> tuple[str, list[str]] | None:
        user = await UserRepository(db).get(user_id)
        if user is None or not user.is_active:
            return None
        return user.username, users.roles_of(user, ctx.admins)

    return await tokens.rotate_refresh(
        ctx.minter, ctx.store, body.refresh_token, load_identity=identity
    )


async def me(ctx: AuthContext, db: AsyncSession, principal: Principal) -> UserInfoResponse:
    user = await users.current_user(db, principal.user_id)
    return users.user_info(user, ctx.admins)


async def logout(ctx: AuthContext, principal: Principal, *, everywhere: bool) -> LogoutResponse:
    """Sign out: by default account-wide (every session, every token of the user, and the
    revocation watermark every verifier checks); `everywhere=False` ends only this session.

    The session service is asked first, with the caller's still-valid token: if it is
    down the answer is 503 and nothing is revoked yet, so the client can simply retry.
    """
    if principal.is_service:
        raise Forbidden("A service token cannot log out.", code="SERVICE_TOKEN")
    if everywhere:
        ended = await ctx.sessions.end_all(_session_service_token(ctx, principal.user_id))
        revoked = await tokens.revoke_user_tokens(ctx.store, principal)
        log.info("auth.logged_out_everywhere", sessions=ended, revoked=revoked)
        return LogoutResponse(
            message="Logged out of every session", revoked_tokens=revoked, all_sessions_ended=True
        )
    if principal.session_id:
        await ctx.sessions.end(principal.session_id, principal.token)
    remaining = await ctx.sessions.count_active(principal.token)
    revoked = await tokens.revoke_session_tokens(ctx.store, principal)
    log.info("auth.logged_out", session_id=principal.session_id, revoked=revoked)
    return LogoutResponse(revoked_tokens=revoked, all_sessions_ended=remaining == 0)


async def service_token(
    ctx: AuthContext, db: AsyncSession, body: ServiceTokenRequest
) -> ServiceTokenResponse:
    """A service token for a service's credential, acting for an existing user."""
    response = tokens.issue_service_token(
        ctx.minter,
        body,
        client_ids=ctx.settings.service_client_ids,
        client_secret=ctx.settings.service_client_secret,
        max_ttl=ctx.settings.service_token_max_ttl_seconds,
    )
    # Checked after the credentials, so a caller without them learns nothing about users.
    if body.on_behalf_of and await UserRepository(db).get(body.on_behalf_of) is None:
        raise NotFound("No such user.", code="USER_NOT_FOUND")
    return response
