"""The case database going away: 503 with Retry-After, never a 500 or a stack trace."""

from __future__ import annotations

import httpx
import pytest

from case_service.main import create_app
from fm_common.testing.postgres import PostgresServer, PostgresUnavailable


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test alone (it is stopped mid-test)."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL UNAVAILABLE, database-down test skipped: {exc}")
    yield server
    server.stop()


async def test_database_down_is_503_with_retry_after(own_postgres, settings, alice):
    url = own_postgres.create_database()
    app = create_app(settings.model_copy(update={"database_url": url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://case") as c:
            created = await c.post("/api/v1/cases", json={"title": "t"}, headers=alice)
            assert created.status_code == 201
            own_postgres.stop()
            for method, path, body in (
                ("GET", "/api/v1/cases", None),
                ("GET", f"/api/v1/cases/{created.json()['case_id']}", None),
                ("POST", "/api/v1/cases", {"title": "u"}),
                ("DELETE", f"/api/v1/cases/{created.json()['case_id']}", None),
            ):
                resp = await c.request(method, path, json=body, headers=alice)
                assert resp.status_code == 503, (method, path, resp.text)
                assert int(resp.headers["retry-after"]) >= 1
                assert resp.json()["code"] == "SERVICE_UNAVAILABLE"
                assert "Traceback" not in resp.text
            ready = await c.get("/ready")
            assert ready.status_code == 503
