"""The dashboard served at / from its build directory, with SPA fallback and strict headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest


@pytest.fixture
def dashboard_dir(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><div id=root></div>SHELL")
    (root / "assets" / "app-1234.js").write_text("console.log('app')")
    (tmp_path / "secret.txt").write_text("outside")
    return root


async def test_index_assets_and_spa_fallback(
    start_gateway: Callable[..., str], dashboard_dir: Path
):
    url = start_gateway(dashboard_dir=dashboard_dir)
    async with httpx.AsyncClient(base_url=url) as client:
        index = await client.get("/")
        assert index.status_code == 200
        assert "SHELL" in index.text
        csp = index.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "connect-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert index.headers["x-content-type-options"] == "nosniff"
        assert index.headers["cache-control"] == "no-cache"

        asset = await client.get("/assets/app-1234.js")
        assert asset.status_code == 200
        assert "javascript" in asset.headers["content-type"]
        assert "immutable" in asset.headers["cache-control"]

        deep = await client.get("/cases/123/report")
        assert deep.status_code == 200
        assert "SHELL" in deep.text

        head = await client.head("/settings")
        assert head.status_code == 200

        missing_asset = await client.get("/assets/gone-999.js")
        assert missing_asset.status_code == 404
        assert missing_asset.json()["code"] == "NOT_FOUND"

        # API paths never fall back to the app shell.
        assert (await client.get("/api/v1/nothing")).status_code == 404


async def test_files_outside_the_dashboard_dir_are_not_served(
    start_gateway: Callable[..., str], dashboard_dir: Path, gateway_url: str
):
    import asyncio

    url = start_gateway(dashboard_dir=dashboard_dir)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"GET /../secret.txt HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    assert b"outside" not in raw


async def test_no_dashboard_dir_means_404_in_the_error_model(client: httpx.AsyncClient):
    resp = await client.get("/")
    assert resp.status_code == 404
    assert resp.headers["x-error-code"] == "NOT_FOUND"
