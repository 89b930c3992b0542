"""The error model of every FaultMaven service (API.md "Errors").

Domain code raises an `FMError` subclass; one set of handlers renders every error as
`{"detail": "<sentence>", "code": "<UPPER_SNAKE>"}` with header `x-error-code`, and
never leaks a stack trace. A dependency that is down becomes 503 with Retry-After.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger("fm_common.errors")


class FMError(Exception):
    """Base of every error a service turns into an HTTP answer."""

    status_code: int = 500
    code: str = "INTERNAL_ERROR"
    detail: str = "Internal server error."

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or type(self).detail
        self.code = code or type(self).code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class BadRequest(FMError):
    status_code, code, detail = 400, "BAD_REQUEST", "The request is not valid."


class Unauthorized(FMError):
    status_code, code, detail = 401, "UNAUTHORIZED", "Authentication required."


class SessionExpired(Unauthorized):
    code, detail = "SESSION_EXPIRED", "The session has expired; open a new session."


class Forbidden(FMError):
    status_code, code, detail = 403, "FORBIDDEN", "You may not do this."


class NotFound(FMError):
    status_code, code, detail = 404, "NOT_FOUND", "Not found."


class Conflict(FMError):
    status_code, code, detail = 409, "CONFLICT", "The request conflicts with the current state."


class PayloadTooLarge(FMError):
    status_code, code, detail = 413, "PAYLOAD_TOO_LARGE", "The request body is too large."


class UnsupportedMediaType(FMError):
    status_code, code, detail = (
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "This type of content is not accepted.",
    )


class Unprocessable(FMError):
    status_code, code, detail = 422, "UNPROCESSABLE", "The request cannot be processed."


class RateLimited(FMError):
    status_code, code, detail = 429, "RATE_LIMITED", "Too many requests; retry later."

    def __init__(self, retry_after: int, detail: str | None = None, **kw: Any) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after)))}
        super().__init__(detail, headers=headers | kw.pop("headers", {}), **kw)


class BadGateway(FMError):
    status_code, code, detail = 502, "BAD_GATEWAY", "An upstream service answered badly."


class Unavailable(FMError):
    status_code, code, detail = 503, "SERVICE_UNAVAILABLE", "A dependency is unavailable."

    def __init__(self, detail: str | None = None, *, retry_after: int = 5, **kw: Any) -> None:
        headers = {"Retry-After": str(max(1, int(retry_after)))}
        super().__init__(detail, headers=headers | kw.pop("headers", {}), **kw)


class GatewayTimeout(FMError):
    status_code, code, detail = (
        504,
        "UPSTREAM_TIMEOUT",
        "An upstream service did not answer in time.",
    )


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "UPSTREAM_TIMEOUT",
}


def error_response(
    status_code: int,
    detail: Any,
    code: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "code": code}
    if extra:
        body.update(extra)
    return JSONResponse(
        jsonable_encoder(body),
        status_code=status_code,
        headers={**(headers or {}), "x-error-code": code},
    )


def dependency_error_classes() -> list[type[Exception]]:
    """The exception classes that can mean 'a dependency is down' (see _dependency_down)."""
    from fm_common.blobs.base import StoreUnavailable

    found: list[type[Exception]] = [ConnectionError, StoreUnavailable]
    try:
        import redis.exceptions as rexc

        found += [rexc.ConnectionError, rexc.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency of fm-common
        pass
    try:
        import sqlalchemy.exc as saexc

        found += [saexc.OperationalError, saexc.InterfaceError, saexc.TimeoutError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import httpx

        found += [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout]
    except ImportError:  # pragma: no cover
        pass
    try:
        import kombu.exceptions

        found.append(kombu.exceptions.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return found


def _dependency_down(exc: BaseException) -> str | None:
    """Name the store behind an exception that means 'a dependency is down', else None."""
    try:
        import redis.exceptions as rexc

        if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError):
            return "redis"
    except ImportError:  # pragma: no cover - redis is a dependency of fm-common
        pass
    try:
        import sqlalchemy.exc as saexc

        if isinstance(exc, saexc.OperationalError | saexc.InterfaceError | saexc.TimeoutError):
            return "database"
    except ImportError:  # pragma: no cover
        pass
    try:
        import httpx

        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return "upstream"
    except ImportError:  # pragma: no cover
        pass
    try:
        import kombu.exceptions

        if isinstance(exc, kombu.exceptions.OperationalError):
            return "job queue"
    except ImportError:  # pragma: no cover
        pass
    from fm_common.blobs.base import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        return "file store"
    if isinstance(exc, ConnectionError):
        return "upstream"
    return None


def install_error_handlers(app: FastAPI, retry_after: int = 5) -> None:
    """Render every error of this app in the one shape of API.md."""

    @app.exception_handler(FMError)
    async def _fm_error(_: Request, exc: FMError) -> JSONResponse:
        return error_response(exc.status_code, exc.detail, exc.code, exc.headers, exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, detail, code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # 422 keeps FastAPI's detail[] list; inputs are dropped so secrets never echo back.
        errors = [
            {k: v for k, v in err.items() if k not in ("input", "url", "ctx")}
            | ({"ctx": {k: str(v) for k, v in err["ctx"].items()}} if err.get("ctx") else {})
            for err in exc.errors()
        ]
        return error_response(422, errors, "VALIDATION_ERROR")

    def _unavailable(request: Request, exc: BaseException, store: str) -> JSONResponse:
        log.warning("dependency.unavailable", store=store, error=repr(exc), path=request.url.path)
        return error_response(
            503,
            f"A dependency ({store}) is unavailable; retry later.",
            "SERVICE_UNAVAILABLE",
            {"Retry-After": str(retry_after)},
        )

    async def _dependency_error(request: Request, exc: Exception) -> JSONResponse:
        store = _dependency_down(exc)
        if store is None:  # a subclass that means something else (a bug): as unhandled
            log.error("request.unhandled_error", path=request.url.path, exc_info=exc)
            return error_response(500, "Internal server error.", "INTERNAL_ERROR")
        return _unavailable(request, exc, store)

    # Handled by class, not by the catch-all below: Starlette answers the catch-all's
    # exceptions and then re-raises them to the server, which logs a traceback
    # ("Exception in ASGI application") and closes the connection (a 502 at the gateway).
    for exc_class in dependency_error_classes():
        app.add_exception_handler(exc_class, _dependency_error)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        store = _dependency_down(exc)
        if store is not None:
            return _unavailable(request, exc, store)
        log.exception("request.unhandled_error", path=request.url.path)
        return error_response(500, "Internal server error.", "INTERNAL_ERROR")
