"""/openapi.json (merged from every service) and /docs (served from local files only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from fm_common.errors import NotFound
from gateway.domain.openapi import merged_openapi, own_schema

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parents[2] / "static"
_DOCS_FILES = {"docs.js": "text/javascript", "docs.css": "text/css"}
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": DOCS_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _own_schema(request: Request) -> dict[str, Any]:
    app = request.app
    cached = getattr(app.state, "own_openapi", None)
    if cached is None:
        cached = own_schema(app)
        app.state.own_openapi = cached
    return cached  # type: ignore[no-any-return]


@router.get("/openapi.json")
async def openapi(request: Request) -> dict[str, Any]:
    return await merged_openapi(request.app.state.gateway, _own_schema(request))


@router.get("/docs")
async def docs() -> FileResponse:
    return FileResponse(STATIC / "docs.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/docs/{name}")
async def docs_asset(name: str) -> FileResponse:
    media_type = _DOCS_FILES.get(name)
    if media_type is None:
        raise NotFound("No such file.")
    return FileResponse(STATIC / name, media_type=media_type, headers=SECURITY_HEADERS)
