"""Typed client of the auth service: service tokens (this process's service credential,
for the /internal routes of other services), and /me."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from fm_common.clients.base import ServiceClient
from fm_common.contracts.auth import (
    ServiceTokenRequest,
    ServiceTokenResponse,
    UserInfoResponse,
)
from fm_common.errors import Unavailable

if TYPE_CHECKING:
    from fm_common.auth import Principal
    from fm_common.settings import ServiceCallerSettings

# A cached service token is replaced this long before it expires, so a token handed out
# never expires while the caller is still using it for one request.
REFRESH_MARGIN_SECONDS = 30


class AuthClient(ServiceClient):
    service = "auth"

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        client_id: str = "worker",
        client_secret: SecretStr | str | None = None,
        ttl_seconds: int = 300,
        **kwargs: object,
    ) -> None:
        super().__init__(base_url, http, **kwargs)  # type: ignore[arg-type]
        if isinstance(client_secret, str):
            client_secret = SecretStr(client_secret)
        self.client_id = client_id
        self.client_secret = client_secret
        self.ttl_seconds = ttl_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    async def service_token(self, on_behalf_of: str) -> str:
        """A service token acting for `on_behalf_of` (cached until shortly before expiry)."""
        cached = self._cache.get(on_behalf_of)
        if cached and cached[1] - time.monotonic() > REFRESH_MARGIN_SECONDS:
            return cached[0]
        async with self._lock:
            cached = self._cache.get(on_behalf_of)
            if cached and cached[1] - time.monotonic() > REFRESH_MARGIN_SECONDS:
                return cached[0]
            if self.client_secret is None or not self.client_secret.get_secret_value():
                # A deployment fault, not the caller's: 503, and the log names the setting.
                raise Unavailable(
                    "No service client secret is configured (FM_SERVICE_CLIENT_SECRET).",
                    code="SERVICE_CREDENTIAL_MISSING",
                )
            body = ServiceTokenRequest(
                client_id=self.client_id,
                client_secret=self.client_secret.get_secret_value(),
                on_behalf_of=on_behalf_of,
                ttl_seconds=self.ttl_seconds,
            )
            started = time.monotonic()
            resp = await self.send_model(
                "POST",
                "/internal/v1/service-token",
                ServiceTokenResponse,
                json=body.model_dump(),
                headers={"Authorization": ""},
            )
            self._cache[on_behalf_of] = (resp.access_token, started + resp.expires_in)
            if len(self._cache) > 10_000:
                self._drop_expired()
            return resp.access_token

    async def token_for(self, principal: Principal) -> str:
        """The token for an /internal call made for `principal`: theirs when it is already
        a service token (the worker), else a service token acting for their user."""
        if principal.is_service:
            return principal.token
        return await self.service_token(principal.user_id)

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for key in [
            k for k, (_, exp) in self._cache.items() if exp - now <= REFRESH_MARGIN_SECONDS
        ]:
            del self._cache[key]

    async def me(self, token: str | None = None) -> UserInfoResponse:
        return await self.get_model("/api/v1/auth/me", UserInfoResponse, token=token)


def service_credential(settings: ServiceCallerSettings, http: httpx.AsyncClient) -> AuthClient:
    """This process's service credential (its /internal calls to other services)."""
    return AuthClient(
        settings.auth_url,
        http,
        client_id=settings.service_client_id or settings.service_name,
        client_secret=settings.service_client_secret,
        retry_after=settings.retry_after_seconds,
    )
