"""/health, /v1/meta/capabilities, /openapi.json, /docs and the gateway's own probes."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import jsonschema

from fm_common.heartbeat import heartbeat_key
from fm_common.testing.shared import reference_openapi_path

# API.md "Discovery": the capabilities shape (the reference document declares the route
# but leaves its schema open), plus our llmProviders and version.
CAPABILITIES_SCHEMA = {
    "type": "object",
    "required": [
        "deploymentMode",
        "kbManagement",
        "dashboardUrl",
        "features",
        "limits",
        "llmProviders",
        "version",
    ],
    "properties": {
        "deploymentMode": {"enum": ["self-hosted", "enterprise"]},
        "kbManagement": {"const": "dashboard"},
        "dashboardUrl": {"type": "string", "pattern": "^https?://.+/$"},
        "features": {
            "type": "object",
            "required": ["extensionKB", "adminKB", "teamSharing", "caseHistory", "sso"],
            "properties": {
                k: {"type": "boolean"}
                for k in ("extensionKB", "adminKB", "teamSharing", "caseHistory", "sso")
            },
        },
        "limits": {
            "type": "object",
            "required": ["maxFileBytes", "allowedExtensions"],
            "properties": {
                "maxFileBytes": {"type": "integer", "minimum": 1},
                "allowedExtensions": {
                    "type": "array",
                    "items": {"type": "string", "pattern": r"^\.[a-z0-9]+$"},
                    "minItems": 1,
                },
                "maxDocuments": {"type": "integer", "minimum": 1},
            },
        },
        "llmProviders": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind", "model"],
                "properties": {k: {"type": "string"} for k in ("name", "kind", "model")},
            },
        },
        "version": {"type": "string", "minLength": 1},
    },
}


async def test_health_is_degraded_when_a_non_critical_component_is_down(
    client: httpx.AsyncClient,
):
    resp = await client.get("/health")  # chroma points at a dead port in these tests
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["services"]["chroma"]["status"] == "unhealthy"
    for name in ("gateway", "auth", "session", "case", "knowledge", "evidence", "agent", "redis"):
        assert body["services"][name]["status"] == "healthy", name
        assert body["services"][name]["latency_ms"] >= 0


async def test_a_burst_of_health_calls_checks_each_service_once(
    start_gateway: Callable[..., str], upstreams: dict
):
    import asyncio

    url = start_gateway(health_cache_seconds=60)
    case = upstreams["case"].url
    async with httpx.AsyncClient() as client:
        before = (await client.get(f"{case}/test-stats")).json()["health"]
        answers = await asyncio.gather(*(client.get(f"{url}/health") for _ in range(20)))
        after = (await client.get(f"{case}/test-stats")).json()["health"]
    assert {a.status_code for a in answers} == {200}
    assert after - before == 1


async def test_health_is_unhealthy_503_when_a_critical_service_is_down(
    start_gateway: Callable[..., str], dead_url: str
):
    url = start_gateway(auth_url=dead_url)
    async with httpx.AsyncClient(base_url=url) as client:
        resp = await client.get("/health")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unhealthy"
    assert body["services"]["auth"]["status"] == "unhealthy"


async def test_health_is_healthy_when_everything_answers(
    start_gateway: Callable[..., str], upstreams: dict, redis_server
):
    import redis

    # The worker and beat beat (fm_common.heartbeat) in this Redis.
    beats = redis.Redis.from_url(redis_server.url)
    for component in ("worker", "beat"):
        beats.set(heartbeat_key(component), "test", ex=60)
    # Any server answering 200 on /api/v2/heartbeat stands for Chroma here.
    url = start_gateway(chroma_url=upstreams["case"].url, critical_components="redis")
    async with httpx.AsyncClient(base_url=url) as client:
        resp = await client.get("/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "healthy"
    assert resp.json()["services"]["worker"]["status"] == "healthy"

    # Issue 16 item 10: /health said healthy with the worker dead.
    beats.delete(heartbeat_key("worker"))
    url = start_gateway(chroma_url=upstreams["case"].url, critical_components="redis")
    async with httpx.AsyncClient(base_url=url) as client:
        dead = (await client.get("/health")).json()
    assert dead["status"] == "degraded"
    assert dead["services"]["worker"] == {
        "status": "unhealthy",
        "error": "HeartbeatMissing",
        "latency_ms": dead["services"]["worker"]["latency_ms"],
    }
    assert dead["services"]["beat"]["status"] == "healthy"
    beats.delete(heartbeat_key("beat"))


async def test_health_with_redis_down_is_unhealthy(
    start_gateway: Callable[..., str], dead_url: str
):
    url = start_gateway(redis_url=f"redis://127.0.0.1:{dead_url.rsplit(':', 1)[1]}/0")
    async with httpx.AsyncClient(base_url=url) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 503
    assert health.json()["services"]["redis"]["status"] == "unhealthy"
    assert ready.status_code == 503
    assert "retry-after" in ready.headers


async def test_capabilities_match_the_schema_and_carry_the_agents_providers(
    client: httpx.AsyncClient,
):
    resp = await client.get("/v1/meta/capabilities")
    assert resp.status_code == 200
    body = resp.json()
    jsonschema.validate(body, CAPABILITIES_SCHEMA)
    reference = json.loads(reference_openapi_path().read_text())
    jsonschema.validate(
        body,
        reference["paths"]["/v1/meta/capabilities"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"],
    )
    assert body["deploymentMode"] == "self-hosted"
    assert body["llmProviders"] == [{"name": "primary", "kind": "openai", "model": "gpt-test"}]
    assert body["dashboardUrl"].endswith("/")


async def test_capabilities_answer_with_no_providers_when_the_agent_is_down(
    start_gateway: Callable[..., str], dead_url: str
):
    url = start_gateway(agent_url=dead_url, public_url="https://fm.example.com")
    async with httpx.AsyncClient(base_url=url) as client:
        resp = await client.get("/v1/meta/capabilities")
    assert resp.status_code == 200
    body = resp.json()
    jsonschema.validate(body, CAPABILITIES_SCHEMA)
    assert body["llmProviders"] == []
    assert body["dashboardUrl"] == "https://fm.example.com/"


async def test_merged_openapi_has_public_paths_of_each_service_and_no_internal_ones(
    client: httpx.AsyncClient,
):
    resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    paths = doc["paths"]
    assert "/api/v1/auth/me" in paths  # from the auth service
    assert "/api/v1/cases/{case_id}/turns/sse" in paths  # the agent's, not the case's copy
    assert "/api/v1/evidence" in paths
    assert "/v1/meta/capabilities" in paths
    assert "/health" in paths
    assert not [p for p in paths if p.startswith("/internal")]
    assert "/{path}" not in paths
    assert "HTTPValidationError" in doc["components"]["schemas"]
    assert "x-services-unavailable" not in doc["info"]
    # Which operations need a token, as the gateway enforces it.
    assert doc["paths"]["/api/v1/auth/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/v1/meta/capabilities"]["get"]["security"] == []
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_docs_page_loads_only_local_assets(client: httpx.AsyncClient):
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "/docs/docs.js" in page.text
    assert "http" not in page.text.replace('href="/openapi.json"', "").split("<body>")[0]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = await client.get("/docs/docs.js")
    assert script.status_code == 200
    assert 'fetch("/openapi.json"' in script.text
    assert (await client.get("/docs/missing.js")).status_code == 404


async def test_gateway_metrics_count_proxied_requests(start_gateway):  # type: ignore[no-untyped-def]
    url = start_gateway(metrics_public=True)
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        await client.get("/api/v1/cases")
        text = (await client.get("/metrics")).text
    assert 'route="proxy:case"' in text
    assert "fm_http_request_duration_seconds" in text


async def test_gateway_metrics_are_not_public_by_default(client: httpx.AsyncClient):
    # Issue 16 item 10: /metrics was public at the gateway.
    resp = await client.get("/metrics")
    assert resp.status_code == 404
    assert "fm_http_request" not in resp.text


async def test_gateway_app_runs_in_process_with_its_lifespan(
    upstreams: dict, redis_url: str, token_issuer, dead_url: str
):
    from gateway_testkit import gateway_settings

    from gateway.main import create_app

    app = create_app(gateway_settings(upstreams, redis_url, token_issuer, dead_url))
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            caps = await client.get("/v1/meta/capabilities")
            proxied = await client.get("/api/v1/cases/c1", headers=token_issuer.headers("u-asgi"))
    assert caps.status_code == 200
    assert caps.headers["x-request-id"]
    assert proxied.json()["service"] == "case"
