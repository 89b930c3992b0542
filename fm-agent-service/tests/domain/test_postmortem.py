"""Post-mortems: from the LLM chain (redacted) or from the case's structured state."""

from __future__ import annotations

from typing import Any

from agent_standins import provider, running, turn_json

from agent_service.domain.reports.postmortem import generate_postmortem
from fm_common.context import bearer_token_var
from fm_common.testing.fake_llm import FakeLLMServer


async def _turn_then_report(settings: Any, standins: Any, token_issuer: Any, user_id: str) -> str:
    case_id = standins.add_case(user_id, title="Orders outage")
    async with running(settings) as client:
        resp = await client.post(
            f"/api/v1/cases/{case_id}/turns",
            data={"query": "orders down, reported by ops.lead@example.com"},
            headers=token_issuer.headers(user_id),
        )
        assert resp.status_code == 200
        # The worker runs it with its service token acting for the owner.
        token = bearer_token_var.set(token_issuer.service_token(user_id))
        try:
            result = await generate_postmortem(client.app.state.runtime, case_id, "rep-1")  # type: ignore[attr-defined]
        finally:
            bearer_token_var.reset(token)
    assert result["status"] == "completed"
    return standins.state.reports["rep-1"]["content"]


async def test_without_a_provider_the_report_comes_from_the_case_state(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str, fake: FakeLLMServer
) -> None:
    report = await _turn_then_report(make_settings([]), standins, token_issuer, user_id)
    assert report.startswith("# Post-mortem: Orders outage")
    for section in ("## Summary", "## Impact", "## Timeline", "## Root cause", "## Resolution"):
        assert section in report
    assert "Reported: orders down" in report
    assert fake.requests == []


async def test_with_a_provider_the_chain_writes_it_from_redacted_facts(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str, fake: FakeLLMServer
) -> None:
    fake.script(turn_json("noted"))  # the turn; the report uses the default writer
    settings = make_settings([provider(fake, "primary")])
    report = await _turn_then_report(settings, standins, token_issuer, user_id)
    assert "## Root cause" in report
    assert "## Action items" in report
    last = fake.requests[-1]
    assert "TASK: postmortem" in last.text
    assert "Orders outage" in last.text
    assert "ops.lead@example.com" not in last.raw
    assert "<EMAIL_1>" in last.text


async def test_the_report_can_be_saved_as_a_personal_runbook(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str
) -> None:
    settings = make_settings([], save_postmortems_to_knowledge=True)
    report = await _turn_then_report(settings, standins, token_issuer, user_id)
    saved = [d for d in standins.state.documents if d.get("tags") == "postmortem"]
    assert len(saved) == 1
    assert saved[0]["owner"] == user_id
    assert saved[0]["scope"] == "personal"
    assert saved[0]["document_type"] == "runbook"
    assert saved[0]["title"] == "Post-mortem: Orders outage"
    assert saved[0]["content"] == report


async def test_the_post_mortem_reads_the_condensed_evidence_pasted_logs_included(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str, fake: FakeLLMServer
) -> None:
    fake.script(turn_json("noted"))
    settings = make_settings([provider(fake, "primary")])
    case_id = standins.add_case(user_id, title="Orders outage")
    pasted = "\n".join(
        [f"2024-05-01T10:00:{i:02d}Z INFO request ok id={i}" for i in range(40)]
        + ["2024-05-01T10:01:00Z ERROR pool exhausted: remaining connection slots reserved"]
        + ["2024-05-01T10:01:01Z ERROR login for ops.lead@example.com failed"]
    )
    async with running(settings) as client:
        resp = await client.post(
            f"/api/v1/cases/{case_id}/turns",
            data={"query": "orders down", "pasted_content": pasted},
            headers=token_issuer.headers(user_id),
        )
        assert resp.status_code == 200
        # The worker runs it with its service token acting for the owner.
        token = bearer_token_var.set(token_issuer.service_token(user_id))
        try:
            await generate_postmortem(client.app.state.runtime, case_id, "rep-2")  # type: ignore[attr-defined]
        finally:
            bearer_token_var.reset(token)
    sent = fake.requests[-1]
    assert "TASK: postmortem" in sent.text
    assert "Evidence content of pasted-content.txt (condensed):" in sent.text
    assert "pool exhausted: remaining connection slots reserved" in sent.text
    assert "ops.lead@example.com" not in sent.raw
    assert sent.text.count("INFO request ok") < 40  # condensed, not the raw log
