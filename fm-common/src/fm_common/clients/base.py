"""The base of every typed service client (fm_common/clients/<svc>.py).

One shared `httpx.AsyncClient` per process (opened in the lifespan), explicit timeouts,
`X-Request-ID` and the caller's bearer token forwarded, retries only for idempotent
calls, and non-2xx answers turned into the typed errors of fm_common.errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import httpx
import structlog
from pydantic import BaseModel

from fm_common.context import current_acting_user, current_bearer_token, current_request_id
from fm_common.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    FMError,
    Forbidden,
    GatewayTimeout,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
)

log = structlog.get_logger("fm_common.clients")
M = TypeVar("M", bound=BaseModel)

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_STATUS_ERRORS: dict[int, type[FMError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
}


def create_http_client(
    *, connect_timeout: float = 2.0, timeout: float = 15.0, max_connections: int = 100
) -> httpx.AsyncClient:
    """The process-wide client every ServiceClient shares."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
        follow_redirects=False,
    )


class ServiceTokenSource(Protocol):
    async def service_token(self, on_behalf_of: str) -> str: ...


INTERNAL_PREFIX = "/internal/"


class ServiceClient:
    """Typed async client of one FaultMaven service.

    With `service_tokens` (this process's service credential, an AuthClient), a call to
    an `/internal/` route without an explicit `token` goes out with a service token acting
    for the user whose request is being served: internal routes refuse users' own tokens
    (ADR 0135). With no such user (the worker, already holding a service token) the
    caller's bearer token is sent as before.
    """

    service: str = "service"

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        retries: int = 2,
        retry_after: int = 5,
        service_tokens: ServiceTokenSource | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.retries = retries
        self.retry_after = retry_after
        self.service_tokens = service_tokens

    async def _internal_token(self, path: str, token: str | None) -> str | None:
        if token is not None or self.service_tokens is None:
            return token
        if not path.startswith(INTERNAL_PREFIX):
            return None
        user = current_acting_user()
        if user is None:
            return None
        return await self.service_tokens.service_token(user)

    def _headers(self, token: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        rid = current_request_id()
        if rid:
            headers["X-Request-ID"] = rid
        token = token or current_bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if extra:
            headers.update(extra)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; return the 2xx response or raise the matching FMError."""
        url = f"{self.base_url}{path}"
        token = await self._internal_token(path, token)
        attempts = 1 + (self.retries if method.upper() in _IDEMPOTENT else 0)
        send_kwargs: dict[str, Any] = {}
        if timeout is not None:
            send_kwargs["timeout"] = timeout
        for attempt in range(1, attempts + 1):
            try:
                resp = await self.http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=self._headers(token, headers),
                    **send_kwargs,
                    **kwargs,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt < attempts:
                    await asyncio.sleep(0.05 * 2**attempt)
                    continue
                log.warning("client.unavailable", service=self.service, url=url, error=repr(exc))
                raise Unavailable(
                    f"The {self.service} service is unavailable.",
                    code=f"{self.service.upper()}_UNAVAILABLE",
                    retry_after=self.retry_after,
                ) from exc
            except httpx.TimeoutException as exc:
                log.warning("client.timeout", service=self.service, url=url)
                raise GatewayTimeout(
                    f"The {self.service} service did not answer in time.",
                    code=f"{self.service.upper()}_TIMEOUT",
                ) from exc
            if resp.status_code >= 500 and attempt < attempts and resp.status_code != 501:
                await asyncio.sleep(0.05 * 2**attempt)
                continue
            return self._check(resp)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check(self, resp: httpx.Response) -> httpx.Response:
        if resp.is_success:
            return resp
        detail: Any = None
        code: str | None = None
        try:
            body = resp.json()
            detail, code = body.get("detail"), body.get("code")
        except (ValueError, AttributeError):
            pass
        code = code or resp.headers.get("x-error-code")
        status = resp.status_code
        if status == 429:
            raise RateLimited(int(resp.headers.get("Retry-After", "1")), detail, code=code)
        if status == 503:
            raise Unavailable(
                detail if isinstance(detail, str) else None,
                code=code,
                retry_after=int(resp.headers.get("Retry-After", self.retry_after)),
            )
        err = _STATUS_ERRORS.get(status)
        if err is None:
            log.warning("client.upstream_error", service=self.service, status=status, code=code)
            raise BadGateway(f"The {self.service} service failed ({status}).", code=code)
        if status == 422 and isinstance(detail, list):
            raise Unprocessable(f"The {self.service} service rejected the request.", code=code)
        raise err(detail if isinstance(detail, str) else None, code=code)

    async def get_model(self, path: str, model: type[M], **kwargs: Any) -> M:
        resp = await self.request("GET", path, **kwargs)
        return model.model_validate_json(resp.content)

    async def send_model(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        resp = await self.request(method, path, **kwargs)
        return model.model_validate_json(resp.content)
