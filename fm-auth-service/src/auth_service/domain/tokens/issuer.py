"""Minting and reading the tokens this service signs (access, refresh, service)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from auth_service.domain.tokens.keys import ALGORITHM, KeyRing
from fm_common.auth import ROLE_SERVICE
from fm_common.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    jti: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    user_id: str
    session_id: str
    family_id: str
    jti: str
    expires_at: int
    issued_at: int = 0


class TokenMinter:
    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        audience: str,
        access_ttl: int,
        refresh_ttl: int,
    ) -> None:
        self.keys = keys
        self.key = keys.current
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def _sign(self, claims: dict[str, Any], ttl: int) -> Minted:
        now = int(time.time())
        jti = uuid.uuid4().hex
        body = {
            **claims,
            "jti": jti,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl,
        }
        token = jwt.encode(
            body, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid}
        )
        return Minted(token, jti, now + ttl)

    def access(self, *, user_id: str, username: str, roles: list[str], session_id: str) -> Minted:
        claims = {
            "sub": user_id,
            "username": username,
            "roles": roles,
            "sid": session_id,
            "type": "access",
        }
        return self._sign(claims, self.access_ttl)

    def refresh(self, *, user_id: str, session_id: str, family_id: str) -> Minted:
        claims = {"sub": user_id, "sid": session_id, "fam": family_id, "type": "refresh"}
        return self._sign(claims, self.refresh_ttl)

    def service(
        self,
        *,
        client_id: str,
        on_behalf_of: str | None,
        ttl: int,
        session_id: str | None = None,
    ) -> Minted:
        claims: dict[str, Any] = {
            "sub": f"service:{client_id}",
            "username": f"service:{client_id}",
            "roles": [ROLE_SERVICE],
            "type": "access",
        }
        if on_behalf_of:
            claims["on_behalf_of"] = on_behalf_of
        if session_id:
            # The login session the auth service opens or binds for the user.
            claims["sid"] = session_id
        return self._sign(claims, ttl)

    def read_refresh(self, token: str) -> RefreshClaims:
        """The claims of a refresh token this service signed, else 401."""
        invalid = Unauthorized("The refresh token is not valid.", code="INVALID_REFRESH_TOKEN")
        try:
            header = jwt.get_unverified_header(token)
            public_key = self.keys.public_key_for(str(header.get("kid")))
            if header.get("alg") != ALGORITHM or public_key is None:
                raise invalid
            claims = jwt.decode(
                token,
                key=public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "sid", "fam", "type"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized(
                "The refresh token has expired; log in again.", code="REFRESH_TOKEN_EXPIRED"
            ) from None
        except jwt.PyJWTError:
            raise invalid from None
        if claims.get("type") != "refresh":
            raise invalid
        return RefreshClaims(
            user_id=str(claims["sub"]),
            session_id=str(claims["sid"]),
            family_id=str(claims["fam"]),
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            issued_at=int(claims["iat"]),
        )
