"""Intent turns the agent decides without the LLM (API.md "Every feature of the
extension"): the status dropdown, Yes / No under a proposal, hypothesis actions; and the
suggestion cards in the extension's vocabulary."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from agent_standins import provider, reference_schema, running, turn_json

from fm_common.contracts.case import Hypothesis
from fm_common.testing.fake_llm import FakeLLMServer

QUERY = "orders service errors: remaining connection slots are reserved for postgres"


@pytest.fixture
def case_id(standins: Any, user_id: str) -> str:
    return standins.add_case(user_id)


@pytest.fixture
def settings(make_settings: Any, fake: FakeLLMServer) -> Any:
    return make_settings([provider(fake, "primary")])


async def post_turn(
    client: httpx.AsyncClient, case_id: str, auth: dict[str, str], **kw: Any
) -> httpx.Response:
    data = {k: v for k, v in kw.items() if v is not None}
    return await client.post(f"/api/v1/cases/{case_id}/turns", data=data, headers=auth)


def dropdown(from_state: str, to_state: str) -> dict[str, str]:
    """What the extension's header status dropdown sends (after its own dialog)."""
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


def confirmation(value: bool) -> dict[str, str]:
    return {
        "query": "Yes" if value else "No",
        "intent_type": "confirmation",
        "intent_data": json.dumps({"type": "confirmation", "confirmation_value": value}),
    }


async def test_the_status_dropdown_moves_the_case_without_the_model(
    settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    async with running(settings) as client:
        first = await post_turn(client, case_id, auth, **dropdown("inquiry", "investigating"))
        second = await post_turn(client, case_id, auth, **dropdown("investigating", "resolved"))
    assert first.status_code == 200
    jsonschema.validate(first.json(), reference_schema("TurnResponse"))
    assert first.json()["case_state"] == "investigating"
    assert first.json()["progress_made"] is True
    assert second.json()["case_state"] == "resolved"
    assert standins.state.cases[case_id]["state"] == "resolved"
    assert fake.requests == []
    stored = standins.state.messages[case_id]
    assert [m["role"] for m in stored] == ["user", "assistant"] * 2
    assert stored[0]["content"] == "Change status to investigating"
    assert stored[1]["metadata"]["decided_without_llm"] is True
    assert stored[1]["metadata"]["outcome"] == "transitioned"


async def test_a_refused_transition_is_explained_and_changes_nothing(
    settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    async with running(settings) as client:
        resp = await post_turn(client, case_id, auth, **dropdown("inquiry", "resolved"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["case_state"] == "inquiry"
    assert "cannot go from **inquiry** to **resolved**" in body["agent_response"]
    assert "**investigating** or **closed**" in body["agent_response"]
    assert body["progress_made"] is False
    assert standins.state.cases[case_id]["state"] == "inquiry"
    assert fake.requests == []


async def test_a_final_state_is_explained_as_final(
    settings: Any, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    case_id = standins.add_case(user_id, state="closed")
    async with running(settings) as client:
        resp = await post_turn(client, case_id, auth, **dropdown("closed", "investigating"))
    assert resp.json()["case_state"] == "closed"
    assert "final state" in resp.json()["agent_response"]


async def test_yes_applies_the_pending_proposal_once(
    settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    fake.script(turn_json(proposed_state="investigating"))
    async with running(settings) as client:
        proposal = await post_turn(client, case_id, auth, query=QUERY)
        pending = standins.state.cases[case_id]["investigation"]["pending_proposal"]
        assert pending["to_state"] == "investigating"
        yes = await post_turn(client, case_id, auth, **confirmation(True))
        again = await post_turn(client, case_id, auth, **confirmation(True))
    assert proposal.json()["case_state"] == "inquiry"
    assert yes.json()["case_state"] == "investigating"
    assert yes.json()["progress_made"] is True
    assert standins.state.cases[case_id]["investigation"]["pending_proposal"] is None
    # The second Yes finds nothing pending: nothing is applied twice.
    assert again.status_code == 200
    assert again.json()["case_state"] == "investigating"
    assert again.json()["progress_made"] is False
    assert "no pending proposal" in again.json()["agent_response"]
    assert len(fake.requests) == 1


async def test_no_records_the_refusal_and_keeps_the_state(
    settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    fake.script(turn_json(proposed_state="closed"))
    async with running(settings) as client:
        await post_turn(client, case_id, auth, query=QUERY)
        no = await post_turn(client, case_id, auth, **confirmation(False))
        late_yes = await post_turn(client, case_id, auth, **confirmation(True))
    assert no.json()["case_state"] == "inquiry"
    assert "stays **inquiry**" in no.json()["agent_response"]
    assert standins.state.messages[case_id][3]["metadata"]["outcome"] == "declined"
    assert late_yes.json()["case_state"] == "inquiry"
    assert standins.state.cases[case_id]["state"] == "inquiry"
    assert len(fake.requests) == 1


async def test_an_unconfirmed_status_change_asks_yes_or_no_first(
    settings: Any, case_id: str, auth: dict[str, str], standins: Any
) -> None:
    data = dropdown("inquiry", "investigating")
    data["intent_data"] = json.dumps(
        {"type": "status_transition", "to_state": "investigating", "user_confirmed": False}
    )
    async with running(settings) as client:
        asked = await post_turn(client, case_id, auth, **data)
        assert asked.json()["case_state"] == "inquiry"
        yes = next(a for a in asked.json()["suggested_actions"] if a["payload"] == "Yes")
        done = await post_turn(
            client,
            case_id,
            auth,
            query=yes["payload"],
            intent_type=yes["intent"]["type"],
            intent_data=json.dumps(yes["intent"]),
        )
    assert done.json()["case_state"] == "investigating"


async def test_a_hypothesis_action_changes_its_status(
    settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    h = Hypothesis(hypothesis_id="h-1", text="Pool exhausted", state="active")
    standins.state.cases[case_id]["investigation"]["hypotheses"] = [h.model_dump()]
    intent = {"type": "hypothesis_action", "hypothesis_id": "h-1", "action": "refute"}
    async with running(settings) as client:
        resp = await post_turn(
            client,
            case_id,
            auth,
            query="Refute",
            intent_type="hypothesis_action",
            intent_data=json.dumps(intent),
        )
        unknown = await post_turn(
            client,
            case_id,
            auth,
            query="Validate",
            intent_type="hypothesis_action",
            intent_data=json.dumps(intent | {"hypothesis_id": "nope", "action": "validate"}),
        )
    assert resp.status_code == 200
    assert resp.json()["investigation"]["hypotheses"][0]["state"] == "refuted"
    stored = standins.state.cases[case_id]["investigation"]["hypotheses"][0]
    assert stored["state"] == "refuted"
    assert "no hypothesis with that id" in unknown.json()["agent_response"]
    assert fake.requests == []


async def test_model_suggestions_come_as_the_extensions_card_types(
    settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer
) -> None:
    fake.script(
        turn_json(
            suggested_actions=[
                {"label": "Check the pool", "type": "RUN", "payload": "psql -c 'show pools'"},
                {"label": "Was there a deploy?", "type": "DECIDE", "payload": "Yes, at 10:00"},
                {"label": "Ask me about the load", "type": "question"},
                {"label": "The pgbouncer log", "type": "EVIDENCE", "payload": "last hour"},
                {"label": "Read the runbook", "type": "runbook"},
                {"label": "Restart it", "type": "RUN"},
            ]
        )
    )
    async with running(settings) as client:
        resp = await post_turn(client, case_id, auth, query=QUERY)
    actions = resp.json()["suggested_actions"]
    jsonschema.validate(resp.json(), reference_schema("TurnResponse"))
    assert [(a["type"], a.get("payload")) for a in actions] == [
        ("RUN", "psql -c 'show pools'"),
        ("DECIDE", "Yes, at 10:00"),
        ("DECIDE", "Ask me about the load"),
        ("EVIDENCE", None),
        ("FREE_SPEECH", None),
        ("FREE_SPEECH", None),  # a RUN without a command is only text
    ]
    assert actions[3]["body"] == "last hour"


async def test_without_a_provider_the_cards_are_in_the_extensions_vocabulary(
    make_settings: Any, case_id: str, auth: dict[str, str]
) -> None:
    async with running(make_settings([])) as client:
        resp = await post_turn(client, case_id, auth, query=QUERY)
    actions = resp.json()["suggested_actions"]
    assert {a["type"] for a in actions} <= {"DECIDE", "RUN", "EVIDENCE", "FREE_SPEECH"}
    decide = [a for a in actions if a["type"] == "DECIDE"]
    assert [a["intent"]["to_state"] for a in decide] == ["investigating", "closed"]
    assert all(a["payload"] for a in decide)
    assert any(a["type"] == "EVIDENCE" for a in actions)
    for a in actions:  # body is text for the user, never instructions for a client
        assert "intent_type" not in (a.get("body") or "")
