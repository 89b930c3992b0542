"""A turn that processes an attachment records what it concluded from the file (the
extension's evidence link and details window read it from the evidence service)."""

from __future__ import annotations

from typing import Any

import httpx
from agent_standins import provider, running, turn_json

from fm_common.testing.fake_llm import FakeLLMServer

LOG = "\n".join(
    f"2024-01-01T10:00:{i:02d}Z ERROR pgbouncer: no more connections allowed (max_client_conn)"
    for i in range(30)
).encode()


async def post_turn(
    client: httpx.AsyncClient, case_id: str, auth: dict[str, str], **kw: Any
) -> httpx.Response:
    files = kw.pop("files", None)
    return await client.post(f"/api/v1/cases/{case_id}/turns", data=kw, files=files, headers=auth)


async def test_the_models_finding_becomes_the_files_derived_evidence(
    make_settings: Any, standins: Any, user_id: str, auth: dict[str, str], fake: FakeLLMServer
) -> None:
    case_id = standins.add_case(user_id)
    fake.script(
        turn_json(
            hypotheses=[
                {"statement": "pgbouncer client limit", "likelihood": 0.8, "evidence": ["E1"]}
            ],
            evidence_findings=[
                {
                    "evidence": "E1",
                    "summary": "pgbouncer refused clients 30 times: max_client_conn reached",
                    "category": "CAUSAL_EVIDENCE",
                }
            ],
        )
    )
    async with running(make_settings([provider(fake, "primary")])) as client:
        resp = await post_turn(
            client,
            case_id,
            auth,
            query="why do clients fail?",
            files={"files": ("pgbouncer.log", LOG, "text/plain")},
        )
    assert resp.status_code == 200, resp.text
    file_id = resp.json()["attachments_processed"][0]["file_id"]
    (item,) = standins.state.derived.values()
    assert item["file_id"] == file_id
    assert item["summary"] == "pgbouncer refused clients 30 times: max_client_conn reached"
    assert item["category"] == "CAUSAL_EVIDENCE"
    assert item["source_type"] == "LOGS"
    assert item["collected_at_turn"] == resp.json()["turn_number"]
    investigation = standins.state.cases[case_id]["investigation"]
    hypothesis = investigation["hypotheses"][0]
    assert item["related_hypothesis_ids"] == [hypothesis["hypothesis_id"]]
    # The investigation counts it too (the /ui view's evidence).
    (evidence,) = investigation["evidence"]
    assert evidence["evidence_id"] == next(iter(standins.state.derived))
    assert evidence["source_filename"] == "pgbouncer.log"
    assert evidence["category"] == "CAUSAL_EVIDENCE"


async def test_without_a_provider_the_derived_evidence_summarises_what_was_read(
    make_settings: Any, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    case_id = standins.add_case(user_id)
    async with running(make_settings([])) as client:
        resp = await post_turn(
            client,
            case_id,
            auth,
            query="look at this",
            files={"files": ("pgbouncer.log", LOG, "text/plain")},
        )
    assert resp.status_code == 200
    (item,) = standins.state.derived.values()
    assert item["summary"].startswith("30 lines")
    assert "no more connections allowed" in item["summary"]
    assert item["category"] == "OTHER"
    assert item["source_type"] == "LOGS"
    evidence = standins.state.cases[case_id]["investigation"]["evidence"]
    assert [e["type"] for e in evidence] == ["logs"]


async def test_pasted_content_gets_its_derived_evidence_too(
    make_settings: Any, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    case_id = standins.add_case(user_id)
    async with running(make_settings([])) as client:
        resp = await post_turn(
            client, case_id, auth, pasted_content="disk /var is 100% full", query="pasted"
        )
    assert resp.status_code == 200
    (item,) = standins.state.derived.values()
    assert item["source_type"] == "TEXT"
    assert item["summary"] == "disk /var is 100% full"


async def test_the_evidence_service_failing_the_record_does_not_fail_the_turn(
    make_settings: Any, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    case_id = standins.add_case(user_id)
    standins.state.down.add("derived")
    async with running(make_settings([])) as client:
        resp = await post_turn(
            client,
            case_id,
            auth,
            query="look at this",
            files={"files": ("pgbouncer.log", LOG, "text/plain")},
        )
    assert resp.status_code == 200
    assert standins.state.derived == {}
    assert len(standins.state.messages[case_id]) == 2  # the turn is stored
