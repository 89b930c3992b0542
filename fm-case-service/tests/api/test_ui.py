"""GET /cases/{id}/ui: the view of each state, in the reference schema's shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest


async def test_inquiry_view(client, make_case, alice, reference):
    case = await make_case(alice)
    body = (await client.get(f"/api/v1/cases/{case['case_id']}/ui", headers=alice)).json()
    reference("CaseUIResponse_Inquiry", body)
    assert body["state"] == "inquiry"
    assert body["valid_next_states"] == ["investigating", "closed"]


async def test_investigating_view_shows_the_investigation(
    svc, client, make_case, alice, turn, reference
):
    case = await make_case(alice, description="API 502s")
    cid = case["case_id"]
    now = datetime.now(UTC).isoformat()
    inv = {
        "milestones": {"symptom_verified": True, "scope_assessed": True},
        "hypotheses": [
            {"hypothesis_id": "h1", "text": "pool exhausted", "likelihood": 0.8, "state": "active"},
            {
                "hypothesis_id": "h2",
                "text": "dns",
                "likelihood": 0.1,
                "state": "refuted",
                "refutation_reason": "resolves fine",
            },
        ],
        "evidence": [
            {
                "evidence_id": "e1",
                "summary": "502 burst",
                "timestamp": now,
                "source_filename": "app.log",
            }
        ],
        "working_conclusion": {"summary": "pool", "confidence": 0.7, "last_updated": now},
        "agent_status": "Checking the pool size",
    }
    await client.post(
        f"/internal/v1/cases/{cid}/turns",
        json=turn(to_state="investigating", investigation=inv, progress_made=True),
        headers=svc(alice),
    )
    body = (await client.get(f"/api/v1/cases/{cid}/ui", headers=alice)).json()
    reference("CaseUIResponse_Investigating", body)
    assert body["agent_status"] == "Checking the pool size"
    assert [h["hypothesis_id"] for h in body["active_hypotheses"]] == ["h1"]
    assert body["progress"]["completed_indicators"] == ["symptom_verified", "scope_assessed"]
    assert body["uploaded_files_count"] == 1
    assert body["latest_evidence"][0]["evidence_id"] == "e1"


@pytest.mark.parametrize("final", ["resolved", "closed"])
async def test_final_views(client, make_case, alice, reference, final):
    case = await make_case(alice)
    url = f"/api/v1/cases/{case['case_id']}/transition"
    await client.post(url, json={"to_state": "investigating"}, headers=alice)
    await client.post(url, json={"to_state": final, "closure_reason": "fixed"}, headers=alice)
    body = (await client.get(f"/api/v1/cases/{case['case_id']}/ui", headers=alice)).json()
    reference("CaseUIResponse_Resolved", body)
    assert body["state"] == final
    assert body["valid_next_states"] == []
    # Nothing was recorded: null, never a placeholder sentence; the reason apart.
    assert body["root_cause"] is None
    assert body["solution_applied"] is None
    assert body["verification_status"] is None
    assert body["closure_reason"] == "fixed"
    if final == "closed":
        assert body["resolved_at"] is None
        assert body["closed_at"]
    else:
        assert body["resolved_at"]
        assert body["closed_at"] is None
    assert {"report_type": "postmortem", "status": "recommended", "reason": None} in body[
        "reports_available"
    ]


async def test_resolved_view_shows_what_was_recorded(
    svc, client, make_case, alice, turn, reference
):
    case = await make_case(alice)
    cid = case["case_id"]
    inv = {
        "root_cause": {"root_cause_id": "rc1", "description": "pool too small"},
        "solution": {"description": "raised max_connections", "verified": True},
    }
    stored = await client.post(
        f"/internal/v1/cases/{cid}/turns",
        json=turn(investigation=inv, to_state="investigating"),
        headers=svc(alice),
    )
    assert stored.status_code == 200, stored.text
    url = f"/api/v1/cases/{cid}/transition"
    await client.post(url, json={"to_state": "resolved", "closure_reason": "done"}, headers=alice)
    body = (await client.get(f"/api/v1/cases/{cid}/ui", headers=alice)).json()
    reference("CaseUIResponse_Resolved", body)
    assert body["root_cause"]["description"] == "pool too small"
    assert body["solution_applied"]["description"] == "raised max_connections"
    assert body["verification_status"]["verified"] is True
    assert body["closure_reason"] == "done"


async def test_files_count_comes_from_the_evidence_service(
    settings, make_case, alice, reference, token_issuer
):
    """The count is the evidence service's (over real HTTP, with the caller's token)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from case_service.main import create_app

    seen: list[tuple[str, str | None]] = []

    class Evidence(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("authorization")))
            body = json.dumps(
                {"files": [], "total_count": 3, "limit": 1, "offset": 0, "has_more": True}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Evidence)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        app = create_app(settings.model_copy(update={"evidence_url": url}))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://case") as c:
                case = (await c.post("/api/v1/cases", json={}, headers=alice)).json()
                body = (await c.get(f"/api/v1/cases/{case['case_id']}/ui", headers=alice)).json()
    finally:
        server.shutdown()
        server.server_close()
    reference("CaseUIResponse_Inquiry", body)
    assert body["uploaded_files_count"] == 3
    [(path, auth)] = seen
    assert path.startswith(f"/api/v1/cases/{case['case_id']}/uploaded-files")
    assert auth == alice["Authorization"]


async def test_ui_renders_with_the_evidence_service_down(client, make_case, alice):
    case = await make_case(alice)
    resp = await client.get(f"/api/v1/cases/{case['case_id']}/ui", headers=alice)
    assert resp.status_code == 200
    assert resp.json()["uploaded_files_count"] == 0
