"""POST /api/v1/cases/{id}/title."""

from __future__ import annotations

from typing import Any

import jsonschema
from agent_standins import provider, reference_schema, running, turn_json

from fm_common.testing.fake_llm import FakeLLMServer


async def test_title_is_generated_from_the_conversation_and_stored(
    make_settings: Any, standins: Any, auth: dict[str, str], user_id: str, fake: FakeLLMServer
) -> None:
    case_id = standins.add_case(user_id)
    fake.script(turn_json("ok"), '"Checkout latency after deploy."')  # the turn, then the title
    async with running(make_settings([provider(fake, "primary")])) as client:
        await client.post(
            f"/api/v1/cases/{case_id}/turns",
            data={"query": "checkout is slow since the 10:00 deploy"},
            headers=auth,
        )
        await client.post(  # a status change is not part of what the case is about
            f"/api/v1/cases/{case_id}/turns",
            data={
                "query": "Change status to investigating",
                "intent_type": "status_transition",
                "intent_data": '{"to_state": "investigating"}',
            },
            headers=auth,
        )
        resp = await client.post(f"/api/v1/cases/{case_id}/title", headers=auth)
    assert resp.status_code == 200
    jsonschema.validate(resp.json(), reference_schema("TitleResponse"))
    assert resp.json()["title"] == "Checkout latency after deploy"
    assert resp.headers["x-title-source"] == "generated"
    assert standins.state.cases[case_id]["title"] == "Checkout latency after deploy"
    assert "TASK: title" in fake.requests[-1].text
    assert "checkout is slow" in fake.requests[-1].text
    assert "Change status" not in fake.requests[-1].text


async def test_a_custom_title_is_kept_unless_forced(
    make_settings: Any, standins: Any, auth: dict[str, str], user_id: str
) -> None:
    case_id = standins.add_case(user_id, title="My own title")
    standins.state.messages[case_id].append(
        {
            "message_id": "m1",
            "turn_number": 1,
            "role": "user",
            "content": "database replica lag keeps growing",
            "created_at": "2024-01-01T00:00:00Z",
        }
    )
    async with running(make_settings([])) as client:
        kept = await client.post(f"/api/v1/cases/{case_id}/title", headers=auth)
        forced = await client.post(
            f"/api/v1/cases/{case_id}/title?force=true", json={"max_words": 4}, headers=auth
        )
    assert kept.json()["title"] == "My own title"
    assert kept.headers["x-title-source"] == "existing"  # nothing changed
    assert forced.json()["title"] == "Database replica lag keeps"
    assert forced.headers["x-title-source"] == "generated"


async def test_title_needs_some_conversation(
    make_settings: Any, standins: Any, auth: dict[str, str], user_id: str, token_issuer: Any
) -> None:
    case_id = standins.add_case(user_id)
    async with running(make_settings([])) as client:
        empty = await client.post(f"/api/v1/cases/{case_id}/title", headers=auth)
        bad = await client.post(
            f"/api/v1/cases/{case_id}/title", json={"max_words": 99}, headers=auth
        )
        other = await client.post(
            f"/api/v1/cases/{case_id}/title", headers=token_issuer.headers("x")
        )
    assert empty.status_code == 422
    assert empty.json()["code"] == "INSUFFICIENT_CONTEXT"
    assert bad.status_code == 422
    assert other.status_code == 404
