"""The error model and request ids of every service."""

from __future__ import annotations

import httpx


async def test_domain_error_renders_detail_code_and_header(demo_client: httpx.AsyncClient):
    resp = await demo_client.get("/conflict")
    assert resp.status_code == 409
    assert resp.json() == {"detail": "It clashes.", "code": "DEMO_CONFLICT"}
    assert resp.headers["x-error-code"] == "DEMO_CONFLICT"


async def test_unhandled_error_is_500_without_internals(demo_client: httpx.AsyncClient):
    resp = await demo_client.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["code"] == "INTERNAL_ERROR"
    assert "secret internals" not in resp.text
    assert "Traceback" not in resp.text


async def test_unknown_route_is_404_in_error_model(demo_client: httpx.AsyncClient):
    resp = await demo_client.get("/nowhere")
    assert resp.status_code == 404
    assert resp.json()["code"] == "NOT_FOUND"


async def test_request_id_is_echoed_or_generated(demo_client: httpx.AsyncClient):
    echoed = await demo_client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await demo_client.get("/health")
    assert len(generated.headers["x-request-id"]) == 32


async def test_ready_reports_redis(demo_client: httpx.AsyncClient):
    resp = await demo_client.get("/ready")
    assert resp.status_code == 200
    assert resp.json()["checks"]["redis"]["status"] == "healthy"


async def test_metrics_are_prometheus_text(demo_client: httpx.AsyncClient):
    await demo_client.get("/conflict")
    resp = await demo_client.get("/metrics")
    assert resp.status_code == 200
    assert (
        'fm_http_requests_total{method="GET",route="/conflict",service="demo",status="409"}'
        in resp.text
    )
