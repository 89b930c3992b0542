"""A screenshot attached to a turn, end to end through the gateway with every real
process (the worker's real OCR with tesseract) and the fake provider: the question "what
does this error say?" is answered from the screenshot alone; the model sees its text and
never the secret in it; the text is indexed into the case and cited like any passage on
the next turn; an office document attached the same way is read too."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
import uuid
from typing import Any

import httpx
import pytest

from fm_common.testing import documents

_NEEDED = ("gateway", "agent_service", "evidence_service", "knowledge_service", "job_worker")
pytestmark = [
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in _NEEDED),
        reason="a service of the whole system is not installed",
    ),
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed"),
]

PASSWORD = "correct horse battery staple"
ERROR = "FATAL: password authentication failed for user orders_rw"
SECRET = "AKIAIOSFODNN7EXAMPLE"
SCREENSHOT_LINES = [
    "Connection failed",
    f"psycopg2.OperationalError: {ERROR}",
    f"aws_access_key_id = {SECRET}",
]


@pytest.fixture(scope="module", autouse=True)
def warm_worker(gateway: httpx.Client) -> None:
    """The worker has run one evidence task (model loaded, start-up tasks done): a turn
    waits at most FM_AGENT_ATTACHMENT_TEXT_WAIT_SECONDS for the OCR, and a worker still
    starting on a loaded machine can take longer than that (the turn then says the
    image is still being read, as test_image_turns.py checks)."""
    auth = _register(gateway)
    case = gateway.post("/api/v1/cases", json={"title": None, "priority": "low"}, headers=auth)
    up = gateway.post(
        "/api/v1/evidence",
        data={"case_id": case.json()["case_id"]},
        files={"file": ("warm.log", b"2026-12-04T10:00:00Z INFO warm\n", "text/plain")},
        headers=auth,
    )
    assert up.status_code == 201, up.text
    deadline = time.monotonic() + 300
    while gateway.get(f"/api/v1/evidence/{up.json()['file_id']}", headers=auth).json()[
        "analysis_status"
    ] not in ("completed", "failed"):
        assert time.monotonic() < deadline, "the worker did not index a small log in 300 s"
        time.sleep(0.5)


def _quote_the_evidence(request: Any) -> str:
    """The model's answer: the error line of the evidence, citing a screenshot passage
    when one was retrieved."""
    from fm_common.testing.fake_llm import default_answer

    text = request.text
    if "TASK: turn" not in text:
        answer = default_answer(request)
        return answer if isinstance(answer, str) else json.dumps(answer)
    line = next((ln for ln in text.splitlines() if "FATAL:" in ln), "no error text seen")
    m = re.search(r"SOURCE (S\d+) \| title: dialog\.png \|", text)
    cited = [m.group(1)] if m else []
    ref = f" [{cited[0]}]" if cited else ""
    return json.dumps(
        {
            "answer": f"The dialog says: {line.strip()}{ref}",
            "cited_sources": cited,
            "milestone_updates": ["symptom_verified"],
            "hypotheses": [{"statement": "Wrong database password", "likelihood": 0.7}],
            "suggested_actions": [],
        }
    )


def _register(gateway: httpx.Client) -> dict[str, str]:
    username = f"shot_{uuid.uuid4().hex[:10]}"
    resp = gateway.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def test_a_screenshot_is_read_redacted_indexed_and_cited(gateway: httpx.Client, fake: Any) -> None:
    fake.responder = _quote_the_evidence
    alice = _register(gateway)
    case = gateway.post("/api/v1/cases", json={"title": None, "priority": "low"}, headers=alice)
    assert case.status_code == 201, case.text
    case_id = case.json()["case_id"]
    shot = documents.text_image(SCREENSHOT_LINES, size=16)

    turn = gateway.post(
        f"/api/v1/cases/{case_id}/turns",
        data={"query": "what does this error say?"},
        files={"files": ("dialog.png", shot, "image/png")},
        headers=alice | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert turn.status_code == 200, turn.text
    body = turn.json()
    attached = body["attachments_processed"][0]
    assert attached["source_type"] == "image"
    assert ERROR in body["agent_response"]  # answered from the screenshot's text
    prompt = fake.requests[-1].text
    assert "dialog.png (image, file_upload)" in prompt
    assert ERROR in prompt
    assert SECRET not in fake.all_text()  # redacted before it left
    assert "<SECRET_" in prompt

    # Listed as derived evidence of the file, source type IMAGE, from the OCR'd text.
    file_id = attached["file_id"]
    details = gateway.get(f"/api/v1/cases/{case_id}/uploaded-files/{file_id}", headers=alice).json()
    assert details["evidence_count"] >= 1, details
    derived = details["derived_evidence"][0]
    assert derived["source_type"] == "IMAGE"
    assert "password authentication failed" in derived["summary"]

    # The evidence service has the text and the words' boxes; the file is indexed.
    text = gateway.get(f"/api/v1/evidence/{file_id}/text", headers=alice).json()
    assert text["status"] == "ready"
    assert ERROR in text["text"]
    assert any(w["text"] == "authentication" for w in text["layout"]["words"])
    deadline = time.monotonic() + 180
    while True:
        meta = gateway.get(f"/api/v1/evidence/{file_id}", headers=alice).json()
        if meta["analysis_status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, meta
        time.sleep(0.5)
    assert meta["analysis_status"] == "completed", meta

    # Next turn: the screenshot's passage is retrieved from the case and cited.
    fake.reset()
    fake.responder = _quote_the_evidence
    again = gateway.post(
        f"/api/v1/cases/{case_id}/turns",
        data={"query": "which user did the password authentication fail for?"},
        headers=alice | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert again.status_code == 200, again.text
    cited = again.json()["citations"]
    assert any(c["title"] == "dialog.png" for c in cited), cited
    assert SECRET not in fake.all_text()


def test_an_office_document_attached_to_a_turn_is_read(gateway: httpx.Client, fake: Any) -> None:
    fake.responder = _quote_the_evidence
    alice = _register(gateway)
    case = gateway.post("/api/v1/cases", json={"title": None, "priority": "low"}, headers=alice)
    case_id = case.json()["case_id"]
    sheet = documents.xlsx(
        {"Errors": [["time", "message"], ["10:02", f"orders-db {ERROR}"]]},
    )
    turn = gateway.post(
        f"/api/v1/cases/{case_id}/turns",
        data={"query": "what does this error say?"},
        files={"files": ("errors.xlsx", sheet, "application/octet-stream")},
        headers=alice | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert turn.status_code == 200, turn.text
    prompt = fake.requests[-1].text
    assert "| time | message |" in prompt  # the sheet's table, as the worker read it
    assert f"| 10:02 | orders-db {ERROR} |" in prompt
    assert "PK\x03\x04" not in prompt


def test_a_screenshot_from_the_extension_alone_is_read(gateway: httpx.Client, fake: Any) -> None:
    """The extension's capture: multipart `files`, `input_type=screenshot`, `source_url`,
    no question at all."""
    fake.responder = _quote_the_evidence
    alice = _register(gateway)
    case = gateway.post(
        "/api/v1/cases",
        json={"title": None, "priority": "medium"},
        headers=alice | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert case.status_code == 201, case.text
    case_id = case.json()["case_id"]
    shot = documents.text_image(SCREENSHOT_LINES, size=15, fmt="JPEG")
    turn = gateway.post(
        f"/api/v1/cases/{case_id}/turns",
        data={"input_type": "screenshot", "source_url": "https://grafana.example.org/d/x"},
        files={"files": ("capture.jpg", shot, "image/jpeg")},
        headers=alice | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert turn.status_code == 200, turn.text
    attached = turn.json()["attachments_processed"][0]
    assert attached["upload_source"] == "screenshot"
    assert attached["source_type"] == "image"
    prompt = fake.requests[-1].text
    assert "capture.jpg (image, screenshot)" in prompt
    assert "password authentication failed" in prompt
    assert SECRET not in fake.all_text()
    files = gateway.get(f"/api/v1/cases/{case_id}/uploaded-files", headers=alice).json()
    assert files["files"][0]["source_type"] == "screenshot"


def test_a_queued_turn_with_a_screenshot_is_read_by_the_worker(
    gateway: httpx.Client, fake: Any
) -> None:
    """202 path: the worker runs the turn; it reads the screenshot itself when the index
    task has not yet (a one-child worker would otherwise wait on itself)."""
    fake.responder = _quote_the_evidence
    alice = _register(gateway)
    case = gateway.post("/api/v1/cases", json={"title": None, "priority": "low"}, headers=alice)
    case_id = case.json()["case_id"]
    shot = documents.text_image(SCREENSHOT_LINES, size=16)
    resp = gateway.post(
        f"/api/v1/cases/{case_id}/turns",
        data={"query": "what does this error say?"},
        files={"files": ("queued.png", shot, "image/png")},
        headers=alice | {"Idempotency-Key": uuid.uuid4().hex, "Prefer": "respond-async"},
    )
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    deadline = time.monotonic() + 240
    while True:
        job = gateway.get(location, headers=alice).json()
        if job.get("status") in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "completed", job
    assert ERROR in job["result"]["agent_response"]
    assert SECRET not in fake.all_text()
