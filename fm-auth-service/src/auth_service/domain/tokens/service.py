"""Business rules of tokens: issue, rotate refresh tokens, revoke, service tokens."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from pydantic import SecretStr

from auth_service.domain.tokens.issuer import Minted, TokenMinter
from auth_service.domain.tokens.repository import TokenStore
from fm_common.auth import Principal, revoked_by_watermark
from fm_common.contracts.auth import (
    ServiceTokenRequest,
    ServiceTokenResponse,
    TokenRefreshResponse,
)
from fm_common.errors import Unauthorized

log = structlog.get_logger(__name__)

# user id -> (username, roles), or None when the account is gone or disabled.
UserIdentityLoader = Callable[[str], Awaitable[tuple[str, list[str]] | None]]


@dataclass(frozen=True, slots=True)
class IssuedPair:
    access: Minted
    refresh: Minted
    family_id: str


async def issue_pair(
    minter: TokenMinter, store: TokenStore, access: Minted, *, user_id: str, session_id: str
) -> IssuedPair:
    """Open a refresh family for a login whose access token is already minted."""
    family_id = uuid.uuid4().hex
    refresh = minter.refresh(user_id=user_id, session_id=session_id, family_id=family_id)
    await store.open_family(
        family_id=family_id, user_id=user_id, session_id=session_id, refresh_jti=refresh.jti
    )
    await store.record_access(
        user_id=user_id, family_id=family_id, jti=access.jti, expires_at=access.expires_at
    )
    return IssuedPair(access, refresh, family_id)


async def revoke_family(store: TokenStore, family_id: str) -> int:
    """Revoke a family and deny-list its live access tokens; returns tokens revoked."""
    was_live, access = await store.revoke_family(family_id)
    return int(was_live) + await store.deny(access)


async def rotate_refresh(
    minter: TokenMinter,
    store: TokenStore,
    refresh_token: str,
    *,
    load_identity: UserIdentityLoader,
) -> TokenRefreshResponse:
    """Exchange a refresh token for a new pair; a reused one revokes its whole family."""
    claims = minter.read_refresh(refresh_token)
    if revoked_by_watermark(claims.issued_at, await store.revoked_before(claims.user_id)):
        raise Unauthorized("The refresh token has been revoked.", code="REFRESH_TOKEN_REVOKED")
    new_refresh = minter.refresh(
        user_id=claims.user_id, session_id=claims.session_id, family_id=claims.family_id
    )
    outcome = await store.rotate(claims.family_id, claims.jti, new_refresh.jti)
    if outcome == -1:
        revoked = await revoke_family(store, claims.family_id)
        log.warning(
            "auth.refresh_reuse_detected",
            user_id=claims.user_id,
            family_id=claims.family_id,
            revoked=revoked,
        )
        raise Unauthorized(
            "This refresh token was already used; every token of its login is revoked.",
            code="REFRESH_TOKEN_REUSED",
        )
    if outcome != 1:
        raise Unauthorized("The refresh token has been revoked.", code="REFRESH_TOKEN_REVOKED")
    identity = await load_identity(claims.user_id)
    if identity is None:
        await revoke_family(store, claims.family_id)
        raise Unauthorized("The account no longer exists.", code="ACCOUNT_DISABLED")
    username, roles = identity
    access = minter.access(
        user_id=claims.user_id, username=username, roles=roles, session_id=claims.session_id
    )
    await store.record_access(
        user_id=claims.user_id,
        family_id=claims.family_id,
        jti=access.jti,
        expires_at=access.expires_at,
    )
    log.info("auth.token_refreshed", user_id=claims.user_id)
    return TokenRefreshResponse(
        access_token=access.token,
        expires_in=minter.access_ttl,
        refresh_token=new_refresh.token,
        refresh_expires_in=minter.refresh_ttl,
    )


async def revoke_session_tokens(store: TokenStore, principal: Principal) -> int:
    """Logout of one session: deny-list this access token, revoke the session's families."""
    revoked = await store.deny({principal.jti: float(principal.expires_at)})
    if principal.session_id:
        for family_id in await store.families_of_session(principal.session_id):
            if await store.family_owner(family_id) in (principal.user_id, None):
                was_live, access = await store.revoke_family(family_id)
                access.pop(principal.jti, None)
                revoked += int(was_live) + await store.deny(access)
    return revoked


async def revoke_user_tokens(store: TokenStore, principal: Principal) -> int:
    """Logout of every session: the user's revocation watermark (every verifier refuses
    their tokens issued before this second), then every live access token (by jti) and
    refresh family of the user; returns the tokens revoked by id."""
    await store.set_revoked_before(principal.user_id, int(time.time()))
    access = await store.live_access_of_user(principal.user_id)
    access[principal.jti] = float(principal.expires_at)
    families = await store.families_of_user(principal.user_id)
    revoked_families = 0
    for family_id in families:
        was_live, family_access = await store.revoke_family(family_id)
        revoked_families += int(was_live)
        access.update(family_access)
    await store.forget_user_families(principal.user_id, families)
    return revoked_families + await store.deny(access)


def issue_service_token(
    minter: TokenMinter,
    body: ServiceTokenRequest,
    *,
    client_ids: tuple[str, ...],
    client_secret: SecretStr | None,
    max_ttl: int,
) -> ServiceTokenResponse:
    """A short-lived service token for a service's credential (constant-time check)."""
    if client_secret is None or not client_secret.get_secret_value():
        raise Unauthorized(
            "Service tokens are not enabled (no service client secret is configured).",
            code="INVALID_CLIENT",
        )
    id_ok = body.client_id in client_ids
    secret_ok = hmac.compare_digest(
        body.client_secret.encode(), client_secret.get_secret_value().encode()
    )
    if not (id_ok and secret_ok):
        log.warning("auth.service_token_refused", client_id=body.client_id)
        raise Unauthorized("The client credentials are not valid.", code="INVALID_CLIENT")
    ttl = min(body.ttl_seconds, max_ttl)
    minted = minter.service(client_id=body.client_id, on_behalf_of=body.on_behalf_of, ttl=ttl)
    log.info("auth.service_token_issued", client_id=body.client_id, on_behalf_of=body.on_behalf_of)
    return ServiceTokenResponse(access_token=minted.token, expires_in=ttl)
