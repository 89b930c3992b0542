"""The service's OpenAPI document is true: every route, its errors, the shared shapes."""

from __future__ import annotations

PUBLIC = {
    ("/api/v1/cases", "get"),
    ("/api/v1/cases", "post"),
    ("/api/v1/cases/{case_id}", "get"),
    ("/api/v1/cases/{case_id}", "put"),
    ("/api/v1/cases/{case_id}", "delete"),
    ("/api/v1/cases/{case_id}/transition", "post"),
    ("/api/v1/cases/{case_id}/archive", "post"),
    ("/api/v1/cases/{case_id}/messages", "get"),
    ("/api/v1/cases/{case_id}/ui", "get"),
    ("/api/v1/cases/{case_id}/reports", "post"),
    ("/api/v1/cases/{case_id}/reports", "get"),
    ("/api/v1/cases/{case_id}/reports/{report_id}", "get"),
    ("/api/v1/cases/{case_id}/reports/jobs/{job_id}", "get"),
}


async def test_openapi_lists_every_route_with_its_errors(client):
    doc = (await client.get("/openapi.json")).json()
    found = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert found >= PUBLIC
    assert ("/internal/v1/cases/{case_id}/turns", "post") in found
    for path, method in PUBLIC - {("/api/v1/cases", "get"), ("/api/v1/cases", "post")}:
        responses = doc["paths"][path][method]["responses"]
        if method != "delete":
            assert "404" in responses, (path, method)
    assert "409" in doc["paths"]["/api/v1/cases/{case_id}/transition"]["post"]["responses"]
    assert "409" in doc["paths"]["/api/v1/cases/{case_id}"]["put"]["responses"]
    schemas = doc["components"]["schemas"]
    for name in ("CaseSummary", "CaseDetail", "CaseListResponse", "CaseMessagesResponse"):
        assert name in schemas
    ui = doc["paths"]["/api/v1/cases/{case_id}/ui"]["get"]["responses"]["200"]
    refs = str(ui["content"]["application/json"]["schema"])
    for variant in ("CaseUIResponse_Inquiry", "CaseUIResponse_Investigating"):
        assert variant in refs


async def test_health_and_ready_report_the_database(client):
    assert (await client.get("/health")).json()["status"] == "healthy"
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert "database" in ready.text
