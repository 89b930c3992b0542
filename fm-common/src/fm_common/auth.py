"""Access-token verification, done again by every service (DESIGN.md "Identity").

Tokens are asymmetric-signed JWTs issued by the auth service. Verification pins the
algorithm, checks signature, `exp`, `iss`, `aud`, `type == "access"`, and (when a Redis
is given) that the `jti` is not deny-listed and that the token was not issued before
its user's revocation watermark (an account-wide sign-out). Public keys come from the auth service's
JWKS, cached and refreshed when a token names an unknown `kid`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import jwt
import structlog
from fastapi import Depends, Request
from jwt import PyJWK

from fm_common.context import set_caller
from fm_common.errors import Forbidden, Unauthorized, Unavailable

log = structlog.get_logger("fm_common.auth")

DENYLIST_PREFIX = "fm:auth:denied-jti:"
# Unix second of a user's last account-wide sign-out: every token of theirs issued in an
# earlier second is refused (tokens of that very second are deny-listed by jti).
REVOKED_BEFORE_PREFIX = "fm:auth:revoked-before:"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. `user_id` is the user the data is scoped to.

    For a worker's service token acting `on_behalf_of` a user, `user_id` is that user and
    `is_service` is true; a service token without `on_behalf_of` has no user data access.
    """

    user_id: str
    username: str
    roles: tuple[str, ...]
    session_id: str | None
    jti: str
    expires_at: int
    token: str = field(repr=False)
    is_service: bool = False
    issued_at: int = 0
    subject: str = ""

    @property
    def is_admin(self) -> bool:
        return ROLE_ADMIN in self.roles


def deny_key(jti: str) -> str:
    return f"{DENYLIST_PREFIX}{jti}"


def revoked_before_key(subject: str) -> str:
    return f"{REVOKED_BEFORE_PREFIX}{subject}"


def revoked_by_watermark(issued_at: int, watermark: Any) -> bool:
    """Was a token issued at `issued_at` signed out by the watermark (None: never)?"""
    if watermark is None:
        return False
    try:
        return issued_at < int(float(watermark))
    except (TypeError, ValueError):
        return False


class TokenVerifier:
    """Verifies access tokens against a JWKS (by URL, or given directly)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...] = ("EdDSA",),
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        redis: Any | None = None,
        cache_seconds: int = 300,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not jwks_url and jwks is None:
            raise ValueError("TokenVerifier needs a jwks_url or a jwks")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.jwks_url = jwks_url
        self.redis = redis
        self.cache_seconds = cache_seconds
        self._http = http
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = 0.0
        self._last_refresh_attempt = 0.0
        self._lock = asyncio.Lock()
        if jwks is not None:
            self._load(jwks)
            self._fetched_at = float("inf")

    def _load(self, jwks: dict[str, Any]) -> None:
        keys: dict[str, PyJWK] = {}
        for jwk in jwks.get("keys", []):
            try:
                key = PyJWK.from_dict(jwk)
            except jwt.PyJWTError:
                log.warning("jwks.key_skipped", kid=jwk.get("kid"))
                continue
            if key.key_id:
                keys[key.key_id] = key
        self._keys = keys

    async def _refresh(self, *, force: bool) -> None:
        if self.jwks_url is None:
            return
        async with self._lock:
            now = time.monotonic()
            fresh = now - self._fetched_at < self.cache_seconds
            if (fresh and not force) or (force and now - self._last_refresh_attempt < 1.0):
                return
            self._last_refresh_attempt = now
            client = self._http or httpx.AsyncClient(timeout=5.0)
            try:
                resp = await client.get(self.jwks_url)
                resp.raise_for_status()
                self._load(resp.json())
                self._fetched_at = now
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                log.warning("jwks.fetch_failed", url=self.jwks_url, error=repr(exc))
                if not self._keys:
                    raise Unavailable("The auth service's keys cannot be fetched.") from exc
            finally:
                if self._http is None:
                    await client.aclose()

    async def _key_for(self, kid: str) -> PyJWK:
        if self.jwks_url and time.monotonic() - self._fetched_at >= self.cache_seconds:
            await self._refresh(force=False)
        key = self._keys.get(kid)
        if key is None:
            await self._refresh(force=True)
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("The token was signed by an unknown key.", code="INVALID_TOKEN")
        return key

    async def verify(self, token: str, *, check_denylist: bool = True) -> Principal:
        """Return the Principal of a valid access token, else raise Unauthorized."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("The token is malformed.", code="INVALID_TOKEN") from None
        alg = header.get("alg")
        kid = header.get("kid")
        if alg not in self.algorithms or not isinstance(kid, str):
            raise Unauthorized("The token is not signed as required.", code="INVALID_TOKEN")
        key = await self._key_for(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "type", "iss", "aud"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.", code="TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise Unauthorized("The token is not valid.", code="INVALID_TOKEN") from None
        if claims.get("type") != "access":
            raise Unauthorized("This is not an access token.", code="INVALID_TOKEN")
        jti = str(claims["jti"])
        if check_denylist and self.redis is not None:
            denied, watermark = await self.redis.mget(
                deny_key(jti), revoked_before_key(str(claims["sub"]))
            )
            if denied or revoked_by_watermark(int(claims["iat"]), watermark):
                raise Unauthorized("The token has been revoked.", code="TOKEN_REVOKED")
        return principal_from_claims(claims, token)


def principal_from_claims(claims: dict[str, Any], token: str) -> Principal:
    roles = tuple(str(r) for r in claims.get("roles") or ())
    is_service = ROLE_SERVICE in roles
    user_id = str(claims["sub"])
    if is_service:
        user_id = str(claims.get("on_behalf_of") or "")
    return Principal(
        user_id=user_id,
        username=str(claims.get("username") or ""),
        roles=roles,
        session_id=claims.get("sid"),
        jti=str(claims["jti"]),
        expires_at=int(claims["exp"]),
        token=token,
        is_service=is_service,
        issued_at=int(claims.get("iat") or 0),
        subject=str(claims["sub"]),
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def require_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, or 401. Needs `app.state.verifier`."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(token)
    if principal.is_service and not principal.user_id:
        raise Forbidden("A service token must act on behalf of a user here.")
    set_caller(token, None if principal.is_service else principal.user_id)
    structlog.contextvars.bind_contextvars(user_id=principal.user_id)
    return principal


async def optional_principal(request: Request) -> Principal | None:
    """The verified caller when a token is sent; None when none is; 401 when it is bad."""
    if bearer_token(request) is None:
        return None
    return await require_principal(request)


async def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("This needs the admin role.")
    return principal


async def require_service(
    principal: Annotated[Principal, Depends(require_principal)],
) -> Principal:
    """Every /internal route: a service token acting for a user; a user's own token is
    403 SERVICE_ONLY (issue 16: a user's token reached a service's /internal route on its
    port and forged an assistant message). ADR 0135."""
    if not principal.is_service:
        raise Forbidden("This route takes service tokens only.", code="SERVICE_ONLY")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
ServicePrincipal = Annotated[Principal, Depends(require_service)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
