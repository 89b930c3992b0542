"""The Copilot extension's contract, row by row (../shared/API.md "Every feature of the
extension, and what each needs from us"), through the gateway of the real system.

Each test sends exactly what the unmodified extension sends (bodies, multipart fields,
headers, its chrome-extension:// Origin) and asserts what the extension reads, validated
against ../shared/reference where it has the schema (with the deviations API.md
documents, fm_common.testing.reference). Notes where neither covers a field:
- `UploadedFileMetadata` (a list row) has no `evidence_count` in the reference; API.md
  asks for it on uploaded-files, so the rows carry it too (the details schema has it).
- `LogoutResponse` in the reference lacks `all_sessions_ended`; API.md has it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
import uuid
from typing import Any

import httpx
import pytest

from fm_common.testing.reference import assert_matches

_NEEDED = (
    "gateway.main",
    "auth_service.main",
    "session_service.main",
    "case_service.main",
    "knowledge_service.main",
    "evidence_service.main",
    "agent_service.main",
    "job_worker.app",
)
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m.split(".")[0]) is None for m in _NEEDED),
    reason="a service of the whole system is not installed",
)

PASSWORD = "correct horse battery staple"
ORIGIN = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
CARD_TYPES = {"DECIDE", "RUN", "EVIDENCE", "FREE_SPEECH"}
LOG = "\n".join(
    f"2026-12-04T09:{i // 60:02d}:{i % 60:02d}Z ERROR api: upstream timed out (502) host=pay-1"
    for i in range(40)
).encode()


class Extension:
    """One install of the extension: its session, tokens and the headers it sends."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.session_id = ""
        self.access = ""
        self.refresh = ""
        self.user: dict[str, Any] = {}

    def headers(self, **extra: str) -> dict[str, str]:
        out = {"Origin": ORIGIN, "X-Session-Id": self.session_id}
        if self.access:
            out["Authorization"] = f"Bearer {self.access}"
        return out | extra

    def start(self, username: str, *, register: bool) -> Extension:
        """Start-up in the extension's order: capabilities, an anonymous session, the
        auth config, then login with the session id."""
        caps = self.http.get("/v1/meta/capabilities", headers={"Origin": ORIGIN})
        assert caps.status_code == 200, caps.text
        assert caps.headers["access-control-allow-origin"] == ORIGIN
        anon = self.http.post(
            "/api/v1/sessions",
            json={
                "client_id": str(uuid.uuid4()),
                "session_type": "troubleshooting",
                "timeout_minutes": 180,
            },
            headers={"Origin": ORIGIN},
        )
        assert anon.status_code == 201, anon.text
        self.session_id = anon.json()["session_id"]
        assert self.http.get("/api/v1/auth/config", headers=self.headers()).status_code == 200
        if register:
            reg = self.http.post(
                "/api/v1/auth/register",
                json={"username": username, "password": PASSWORD},
                headers=self.headers(),
            )
            assert reg.status_code == 201, reg.text
        login = self.http.post(
            "/api/v1/auth/login",
            json={"username": username, "password": PASSWORD},
            headers=self.headers(),
        )
        assert login.status_code == 200, login.text
        body = login.json()
        self.access, self.refresh, self.user = (
            body["access_token"],
            body["refresh_token"],
            body["user"],
        )
        self.session_id = body["session_id"]
        return self

    def new_case(self, **body: Any) -> dict[str, Any]:
        resp = self.http.post(
            "/api/v1/cases",
            json={"title": None, "priority": "low"} | body,
            headers=self.headers(**{"Idempotency-Key": f"ext-{uuid.uuid4().hex}"}),
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    def turn(self, case_id: str, files: Any = None, **fields: str) -> httpx.Response:
        """A turn as the extension sends it: multipart, with an Idempotency-Key."""
        return self.http.post(
            f"/api/v1/cases/{case_id}/turns",
            data=fields,
            files=files,
            headers=self.headers(**{"Idempotency-Key": f"turn-{uuid.uuid4().hex}"}),
        )

    def click(self, case_id: str, card: dict[str, Any]) -> httpx.Response:
        """A DECIDE card's click: its payload as the message, its intent as the intent."""
        assert card["type"] == "DECIDE"
        fields = {"query": card["payload"]}
        if card.get("intent"):
            fields["intent_type"] = card["intent"]["type"]
            fields["intent_data"] = json.dumps(card["intent"])
        return self.turn(case_id, **fields)


@pytest.fixture
def ext(gateway: httpx.Client) -> Extension:
    return Extension(gateway).start(f"copilot_{uuid.uuid4().hex[:10]}", register=True)


def model_answer(proposed_state: str | None = None) -> Any:
    """The provider's structured answer, in the shape the agent asks for."""

    def respond(request: Any) -> str:
        from fm_common.testing.fake_llm import default_answer

        if "TASK: turn" not in request.text:
            answer = default_answer(request)
            return answer if isinstance(answer, str) else json.dumps(answer)
        evidence = re.findall(r"EVIDENCE (E\d+) \|", request.text)
        return json.dumps(
            {
                "answer": "The upstream payment host times out; check its pool.",
                "milestone_updates": ["symptom_verified"],
                "hypotheses": [
                    {"statement": "pay-1 is saturated", "likelihood": 0.7, "evidence": evidence}
                ],
                "proposed_state": proposed_state,
                "evidence_findings": [
                    {
                        "evidence": e,
                        "summary": "40 upstream timeouts (502) from pay-1 in 40 seconds",
                        "category": "SYMPTOM_EVIDENCE",
                    }
                    for e in evidence
                ],
                "suggested_actions": [
                    {"label": "Check pay-1", "type": "RUN", "payload": "curl -sf pay-1/health"},
                    {"label": "It started at 09:00", "type": "DECIDE", "payload": "09:00"},
                    {"label": "The pay-1 access log", "type": "EVIDENCE"},
                    {"label": "Timeouts often follow deploys", "type": "FREE_SPEECH"},
                ],
            }
        )

    return respond


def dropdown(from_state: str, to_state: str) -> dict[str, str]:
    return {
        "query": f"Change status to {to_state}",
        "intent_type": "status_transition",
        "intent_data": json.dumps(
            {
                "type": "status_transition",
                "from_state": from_state,
                "to_state": to_state,
                "user_confirmed": True,
            }
        ),
    }


def test_start_a_case_by_attaching_a_file_sends_metadata(ext: Extension) -> None:
    meta = {"created_via": "browser_extension", "auto_generated": True}
    case = ext.new_case(priority="medium", metadata=meta)
    assert_matches("CaseSummary", case)
    assert case["metadata"] == meta
    listed = ext.http.get("/api/v1/cases?limit=50", headers=ext.headers())
    assert listed.status_code == 200
    assert_matches("CaseListResponse", listed.json())
    assert listed.headers["access-control-allow-origin"] == ORIGIN
    paged = ext.http.get("/api/v1/cases?limit=100&offset=0", headers=ext.headers())
    assert [c["case_id"] for c in paged.json()["cases"]] == [case["case_id"]]
    ui = ext.http.get(f"/api/v1/cases/{case['case_id']}/ui", headers=ext.headers())
    assert ui.json()["state"] == "inquiry"


def test_header_status_dropdown_moves_the_case(ext: Extension, fake: Any) -> None:
    case_id = ext.new_case()["case_id"]
    moved = ext.turn(case_id, **dropdown("inquiry", "investigating"))
    assert moved.status_code == 200, moved.text
    assert_matches("TurnResponse", moved.json())
    assert moved.json()["case_state"] == "investigating"
    refused = ext.turn(case_id, **dropdown("investigating", "inquiry"))
    assert refused.json()["case_state"] == "investigating"
    assert "cannot go from **investigating** to **inquiry**" in refused.json()["agent_response"]
    resolved = ext.turn(case_id, **dropdown("investigating", "resolved"))
    assert resolved.json()["case_state"] == "resolved"
    ui = ext.http.get(f"/api/v1/cases/{case_id}/ui", headers=ext.headers()).json()
    assert ui["state"] == "resolved"
    assert fake.requests == []  # decided without the LLM


def test_yes_and_no_under_a_proposal_and_suggestion_cards(ext: Extension, fake: Any) -> None:
    case_id = ext.new_case()["case_id"]
    fake.responder = model_answer(proposed_state="investigating")
    first = ext.turn(case_id, query="payments fail with 502 since 09:00")
    assert first.status_code == 200, first.text
    body = first.json()
    assert_matches("TurnResponse", body)
    for card in body["suggested_actions"]:
        assert_matches("SuggestedActionResponse", card)
        assert card["type"] in CARD_TYPES
    by_label = {c["label"]: c for c in body["suggested_actions"]}
    assert by_label["Check pay-1"]["type"] == "RUN"
    assert by_label["Check pay-1"]["payload"] == "curl -sf pay-1/health"
    assert by_label["It started at 09:00"]["payload"] == "09:00"
    assert by_label["The pay-1 access log"]["type"] == "EVIDENCE"
    yes, no = (c for c in body["suggested_actions"] if (c.get("intent") or {}).get("type"))
    assert (yes["payload"], no["payload"]) == ("Yes", "No")
    assert body["case_state"] == "inquiry"  # only a proposal so far
    model_calls = len(fake.requests)

    # A DECIDE click sends its payload as the next message.
    follow = ext.click(case_id, by_label["It started at 09:00"])
    assert follow.status_code == 200
    assert fake.requests[-1].text.rstrip().endswith("QUESTION: 09:00")
    # The follow-up answer proposed again: Yes applies it, a second Yes does nothing.
    yes = next(c for c in follow.json()["suggested_actions"] if c["payload"] == "Yes")
    calls = len(fake.requests)
    applied = ext.click(case_id, yes)
    assert applied.json()["case_state"] == "investigating"
    again = ext.click(case_id, yes)
    assert again.json()["case_state"] == "investigating"
    assert again.json()["progress_made"] is False
    assert len(fake.requests) == calls  # neither Yes reached the model
    assert model_calls >= 1

    # No records the refusal.
    fake.responder = model_answer(proposed_state="resolved")
    proposal = ext.turn(case_id, query="the pool size was raised and it works now")
    no = next(c for c in proposal.json()["suggested_actions"] if c["payload"] == "No")
    declined = ext.click(case_id, no)
    assert declined.json()["case_state"] == "investigating"
    assert "stays **investigating**" in declined.json()["agent_response"]


def test_hypothesis_action_changes_the_hypothesis(ext: Extension, fake: Any) -> None:
    case_id = ext.new_case()["case_id"]
    fake.responder = model_answer()
    first = ext.turn(case_id, query="payments fail with 502")
    hypothesis = first.json()["investigation"]["hypotheses"][0]
    resp = ext.turn(
        case_id,
        query="Refute",
        intent_type="hypothesis_action",
        intent_data=json.dumps(
            {
                "type": "hypothesis_action",
                "hypothesis_id": hypothesis["hypothesis_id"],
                "action": "refute",
            }
        ),
    )
    assert resp.status_code == 200, resp.text
    states = {h["hypothesis_id"]: h["state"] for h in resp.json()["investigation"]["hypotheses"]}
    assert states[hypothesis["hypothesis_id"]] == "refuted"


def test_sign_out_ends_every_client_of_the_account(gateway: httpx.Client) -> None:
    username = f"copilot_{uuid.uuid4().hex[:10]}"
    extension = Extension(gateway).start(username, register=True)
    dashboard = Extension(gateway).start(username, register=False)  # its own token chain
    out = gateway.post("/api/v1/auth/logout", headers=extension.headers())
    assert out.status_code == 200, out.text
    assert_matches("LogoutResponse", out.json())
    assert out.json()["all_sessions_ended"] is True
    assert out.json()["revoked_tokens"] >= 2
    for client in (extension, dashboard):
        me = gateway.get("/api/v1/auth/me", headers=client.headers())
        assert me.status_code == 401
        assert me.json()["code"] == "TOKEN_REVOKED"
        refreshed = gateway.post(
            "/api/v1/auth/refresh",
            json={"refresh_token": client.refresh},
            headers={"Origin": ORIGIN},
        )
        assert refreshed.status_code == 401


def test_generate_title_says_where_the_title_came_from(ext: Extension, fake: Any) -> None:
    case_id = ext.new_case()["case_id"]
    ext.turn(case_id, query="checkout latency doubled after the 10:00 deploy")
    url = f"/api/v1/cases/{case_id}/title"
    made = ext.http.post(url, json={"max_words": 8}, headers=ext.headers())
    assert made.status_code == 200, made.text
    assert_matches("TitleResponse", made.json())
    assert made.headers["x-title-source"] == "generated"
    exposed = made.headers["access-control-expose-headers"].lower()
    assert "x-title-source" in exposed
    kept = ext.http.post(url, json={"max_words": 8}, headers=ext.headers())
    assert kept.headers["x-title-source"] == "existing"
    assert kept.json()["title"] == made.json()["title"]


def test_evidence_link_and_details_window(ext: Extension, fake: Any) -> None:
    case_id = ext.new_case()["case_id"]
    fake.responder = model_answer()
    turn = ext.turn(
        case_id,
        files=[("files", ("api.log", LOG, "text/plain"))],
        query="what does this log show?",
    )
    assert turn.status_code == 200, turn.text
    file_id = turn.json()["attachments_processed"][0]["file_id"]
    listed = ext.http.get(f"/api/v1/cases/{case_id}/uploaded-files", headers=ext.headers())
    assert listed.status_code == 200
    assert_matches("UploadedFilesList", listed.json())
    (row,) = listed.json()["files"]
    assert row["evidence_count"] == 1
    details = ext.http.get(
        f"/api/v1/cases/{case_id}/uploaded-files/{file_id}", headers=ext.headers()
    )
    body = details.json()
    assert_matches("UploadedFileDetailsResponse", body)
    assert body["evidence_count"] == 1
    (derived,) = body["derived_evidence"]
    assert derived["summary"] == "40 upstream timeouts (502) from pay-1 in 40 seconds"
    assert derived["category"] == "SYMPTOM_EVIDENCE"
    assert derived["source_type"] == "LOGS"
    assert derived["collected_at_turn"] == turn.json()["turn_number"]
    hypothesis = turn.json()["investigation"]["hypotheses"][0]["hypothesis_id"]
    assert derived["related_hypothesis_ids"] == [hypothesis]


@pytest.mark.parametrize("final", ["resolved", "closed"])
def test_resolved_and_closed_case_panel(ext: Extension, final: str) -> None:
    case_id = ext.new_case()["case_id"]
    ext.turn(case_id, **dropdown("inquiry", "investigating"))
    ext.turn(case_id, **dropdown("investigating", final))
    ui = ext.http.get(f"/api/v1/cases/{case_id}/ui", headers=ext.headers())
    assert ui.status_code == 200
    body = ui.json()
    assert_matches("CaseUIResponse_Resolved", body)
    assert body["state"] == final
    assert body["root_cause"] is None
    assert body["solution_applied"] is None
    if final == "closed":
        assert body["resolved_at"] is None
        assert body["closed_at"]
    else:
        assert body["resolved_at"]


def test_heartbeat_of_a_gone_session_is_session_expired(ext: Extension) -> None:
    beat = ext.http.post(f"/api/v1/sessions/{ext.session_id}/heartbeat", headers=ext.headers())
    assert beat.status_code == 200, beat.text
    gone = ext.http.delete(f"/api/v1/sessions/{ext.session_id}", headers=ext.headers())
    assert gone.status_code == 204
    beat = ext.http.post(f"/api/v1/sessions/{ext.session_id}/heartbeat", headers=ext.headers())
    assert beat.status_code == 401
    assert beat.json()["code"] == "SESSION_EXPIRED"
    assert beat.headers["x-error-code"] == "SESSION_EXPIRED"
    assert "x-error-code" in beat.headers["access-control-expose-headers"].lower()


def test_answers_queued_as_202_are_polled_at_their_location(ext: Extension, fake: Any) -> None:
    case_id = ext.new_case()["case_id"]
    resp = ext.http.post(
        f"/api/v1/cases/{case_id}/turns",
        data={"query": "is the queue path alive?"},
        headers=ext.headers(Prefer="respond-async", **{"Idempotency-Key": uuid.uuid4().hex}),
    )
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = ext.http.get(location, headers=ext.headers()).json()
        if job["status"] in ("completed", "failed"):
            break
        time.sleep(0.5)
    assert job["status"] == "completed", job
    assert_matches("TurnResponse", job["result"])
    assert {c["type"] for c in job["result"]["suggested_actions"]} <= CARD_TYPES


def test_cors_preflight_allows_what_the_extension_sends(gateway: httpx.Client) -> None:
    pre = gateway.options(
        "/api/v1/cases",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-session-id, "
            "idempotency-key, x-request-id",
        },
    )
    assert pre.status_code in (200, 204)
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert pre.headers["access-control-allow-credentials"] == "true"
    allowed = pre.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-session-id", "idempotency-key"):
        assert header in allowed
