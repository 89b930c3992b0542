"""CORS as the real extension needs it (API.md "What the real extension does").

An allowed origin is reflected (never `*`) with credentials allowed; everything else
gets no CORS headers at all, so the browser refuses it.
"""

from __future__ import annotations

ALLOW_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD"
ALLOW_HEADERS = (
    b"authorization, content-type, x-session-id, idempotency-key, x-request-id, "
    b"if-match, accept, last-event-id"
)
EXPOSE_HEADERS = (
    b"Location, Retry-After, x-error-code, x-expected-version, x-actual-version, x-request-id, "
    b"x-title-source"
)
MAX_AGE = b"600"


class CorsPolicy:
    def __init__(self, origins: list[str], own_origin: str) -> None:
        self.exact: set[bytes] = set()
        self.schemes: list[bytes] = []
        for origin in [*origins, own_origin]:
            origin = origin.strip().rstrip("/")
            if origin == "*":
                raise ValueError(
                    "FM_GATEWAY_CORS_ORIGINS may not be '*': credentials are sent, so "
                    "origins are listed (or given as scheme://*)"
                )
            if origin.endswith("://*"):
                self.schemes.append(origin[:-1].encode())
            elif origin:
                self.exact.add(origin.encode())
        self._decided: dict[bytes, bool] = {}

    def allows(self, origin: bytes) -> bool:
        decided = self._decided.get(origin)
        if decided is not None:
            return decided
        ok = origin in self.exact or any(
            origin.startswith(s) and len(origin) > len(s) and b"/" not in origin[len(s) :]
            for s in self.schemes
        )
        if len(self._decided) < 4096:
            self._decided[origin] = ok
        return ok

    def response_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None:
            return []
        if not self.allows(origin):
            # The answer still depends on Origin: no cache may hand it to another origin.
            return [(b"vary", b"Origin")]
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]

    def preflight_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE),
            (b"vary", b"Origin"),
        ]
