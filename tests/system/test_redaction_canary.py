"""The redaction canary against the whole running system (every Procfile process, through
the gateway; the fake LLM provider records every request it receives): 30 kinds of
planted secret (the 17 the docs listed and the 13 an attack run found leaking) through
every channel that reaches a provider: the query, pasted content, a runbook in the
knowledge base, an attached log, the history of the next turn, the title and the
post-mortem (written by the worker). 0 leaks."""

from __future__ import annotations

import importlib.util
import re
import time
import uuid
from typing import Any

import httpx
import pytest

from fm_common.testing.canaries import canaries, leaks

_NEEDED = ("gateway", "auth_service", "case_service", "knowledge_service", "evidence_service")
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in (*_NEEDED, "agent_service", "job_worker")),
    reason="a service of the whole system is not installed",
)

PASSWORD = "correct horse battery staple"
PLACEHOLDER = re.compile(r"<(?:SECRET|EMAIL|IP|PHONE|CARD|SSN)_\d+>")


def _echo(request: Any) -> str:
    """The model repeats every placeholder of the last message: the user sees them
    restored to the originals, which come back as history and in the post-mortem."""
    import json

    from fm_common.testing.fake_llm import default_answer

    messages = (request.body or {}).get("messages") or [{"content": request.text}]
    last = str(messages[-1].get("content", ""))
    found = " ".join(sorted(set(PLACEHOLDER.findall(last))))
    if "TASK: turn" in request.text:
        return json.dumps({"answer": f"Seen: {found}", "cited_sources": []})
    if "TASK: postmortem" in request.text:
        return (
            f"# Post-mortem: canary\n\n## Summary\nSeen: {found}\n\n## Impact\nnone\n\n"
            "## Timeline\n- 10:00 planted\n\n## Root cause\ncanary\n\n## Resolution\nnone\n\n"
            "## Action items\n- [ ] none\n"
        )
    answer = default_answer(request)
    return answer if isinstance(answer, str) else json.dumps(answer)


def _poll(gateway: httpx.Client, url: str, auth: dict[str, str], done: Any) -> Any:
    deadline = time.monotonic() + 240
    body: Any = None
    while time.monotonic() < deadline:
        resp = gateway.get(url, headers=auth)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if done(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"{url} not done: {body}")


def test_thirty_canary_kinds_through_every_channel_leak_nothing(
    gateway: httpx.Client, fake: Any
) -> None:
    kinds = canaries(uuid.uuid4().hex[:6])
    assert len(kinds) == 30
    block = "\n".join(c.line for c in kinds)
    fake.responder = _echo
    name = f"canary_{uuid.uuid4().hex[:10]}"
    reg = gateway.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD})
    assert reg.status_code == 201, reg.text
    auth = {"Authorization": f"Bearer {reg.json()['access_token']}"}

    # A runbook holding every kind, processed by the worker into the knowledge base.
    runbook = f"# Orders service credentials\n\nOrders config for the canary service:\n\n{block}\n"
    up = gateway.post(
        "/api/v1/knowledge/documents",
        files={"file": ("orders-credentials.md", runbook.encode(), "text/markdown")},
        data={"title": "Orders credentials", "document_type": "runbook", "scope": "personal"},
        headers=auth,
    )
    assert up.status_code == 202, up.text
    doc = _poll(
        gateway,
        f"/api/v1/knowledge/documents/{up.json()['document_id']}",
        auth,
        lambda b: b["status"] in ("processed", "failed"),
    )
    assert doc["status"] == "processed", doc

    case = gateway.post("/api/v1/cases", json={"title": None}, headers=auth)
    assert case.status_code == 201, case.text
    case_id = case.json()["case_id"]
    turns = f"/api/v1/cases/{case_id}/turns"
    channels: dict[str, list[Any]] = {}

    def record(channel: str, fn: Any) -> Any:
        before = len(fake.requests)
        out = fn()
        channels[channel] = fake.requests[before:]
        return out

    def turn(**kw: Any) -> Any:
        files = kw.pop("files", None)
        resp = gateway.post(turns, data=kw, files=files, headers=auth)
        assert resp.status_code == 200, resp.text
        return resp.json()

    first = record("query", lambda: turn(query=f"Orders config for the canary service:\n{block}"))
    record("runbook", lambda: turn(query="Orders service credentials config for the canary"))
    record("pasted content", lambda: turn(query="and this paste?", pasted_content=block))
    log = "\n".join(f"2026-11-24T10:00:{i:02d}Z INFO request {i} served" for i in range(30))
    log += "\n" + "\n".join(
        f"2026-11-24T10:01:{i:02d}Z ERROR config dump: {c.line}" for i, c in enumerate(kinds)
    )
    record(
        "attached log",
        lambda: turn(
            query="and this log?", files={"files": ("app.log", log.encode(), "text/plain")}
        ),
    )
    record("history", lambda: turn(query="What should I do next?"))

    def title() -> None:
        resp = gateway.post(f"/api/v1/cases/{case_id}/title", json={"force": True}, headers=auth)
        assert resp.status_code == 200, resp.text

    record("title", title)

    def postmortem() -> None:
        rep = gateway.post(
            f"/api/v1/cases/{case_id}/reports", json={"report_type": "postmortem"}, headers=auth
        )
        assert rep.status_code == 202, rep.text
        job = _poll(
            gateway, rep.headers["Location"], auth, lambda b: b["status"] in ("completed", "failed")
        )
        assert job["status"] == "completed", job

    record("post-mortem", postmortem)

    # The runbook passage reached the prompt (so the channel was really exercised).
    assert "Orders credentials" in " ".join(r.text for r in channels["runbook"])
    assert "Seen: <" in channels["history"][0].text  # the answer came back as history
    counts = {}
    for channel, requests in channels.items():
        assert requests, channel
        sent = "\n".join(r.raw + r.text for r in requests)
        counts[channel] = leaks(sent, kinds)
    print("canary leaks per channel (30 kinds):", {k: len(v) for k, v in counts.items()})  # noqa: T201
    assert counts == {channel: [] for channel in channels}
    # The user saw the originals the model referred to (restored), not placeholders.
    assert sum(c.secrets[0] in first["agent_response"] for c in kinds) >= 25
    assert leaks("\n".join(r.raw for r in fake.requests), kinds) == []
