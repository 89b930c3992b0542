"""The web dashboard (fm-dashboard/dist), served at / with single-page-app fallback."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from fm_common.errors import NotFound

router = APIRouter(include_in_schema=False)

DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": DASHBOARD_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def resolve(root: Path, path: str) -> Path | None:
    """The file for `path` inside root, index.html for app routes, None when missing."""
    root = root.resolve()
    relative = path.lstrip("/")
    if relative:
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root):
            return None
        if candidate.is_file():
            return candidate
        # A missing asset (it has an extension) is a 404, not the app shell.
        if "." in relative.rsplit("/", 1)[-1]:
            return None
    index = root / "index.html"
    return index if index.is_file() else None


@router.api_route("/{path:path}", methods=["GET", "HEAD"])
async def dashboard(path: str, request: Request) -> FileResponse:
    root: Path = request.app.state.gateway.settings.dashboard_dir
    found = resolve(root, path) if root.is_dir() else None
    if found is None:
        raise NotFound("Not found.")
    headers = dict(HEADERS)
    # Hashed build assets never change; the shell must be re-read to pick up a new build.
    headers["Cache-Control"] = (
        "public, max-age=31536000, immutable" if path.startswith("assets/") else "no-cache"
    )
    return FileResponse(found, headers=headers)
