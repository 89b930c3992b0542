"""Internal routes the agent uses: case context (with the investigation), atomic idempotent
turns."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fm_common.clients.case import CaseClient
from fm_common.contracts.case import (
    CaseState,
    InvestigationState,
    TurnAppendRequest,
    TurnMessage,
)
from fm_common.errors import Conflict, NotFound


def _investigation(**overrides) -> dict:
    inv = InvestigationState()
    inv.milestones["symptom_verified"] = True
    inv.problem_statement = "502s from the API"
    data = inv.model_dump(mode="json")
    data["hypotheses"] = [
        {
            "hypothesis_id": "h1",
            "text": "upstream pool exhausted",
            "likelihood": 0.7,
            "state": "active",
        }
    ]
    data.update(overrides)
    return data


async def test_turn_stores_both_messages_and_the_investigation(svc, client, make_case, alice, turn):
    case = await make_case(alice)
    cid = case["case_id"]
    body = turn(investigation=_investigation(), progress_made=True)
    resp = await client.post(f"/internal/v1/cases/{cid}/turns", json=body, headers=svc(alice))
    assert resp.status_code == 200
    result = resp.json()
    assert (result["turn_number"], result["case_state"], result["replayed"]) == (
        1,
        "inquiry",
        False,
    )
    assert result["milestones_completed"] == ["symptom_verified"]
    msgs = (await client.get(f"/api/v1/cases/{cid}/messages", headers=alice)).json()["messages"]
    assert [(m["role"], m["turn_number"]) for m in msgs] == [("user", 1), ("assistant", 1)]
    assert msgs[1]["metadata"] == {"provider": "fake"}
    assert msgs[1]["message_id"] == result["assistant_message_id"]
    ctx = (await client.get(f"/internal/v1/cases/{cid}", headers=svc(alice))).json()
    assert ctx["case"]["current_turn"] == 1
    assert ctx["case"]["milestones_completed"] == ["symptom_verified"]
    assert ctx["investigation"]["hypotheses"][0]["hypothesis_id"] == "h1"
    detail = (await client.get(f"/api/v1/cases/{cid}", headers=alice)).json()
    assert (detail["current_turn"], detail["hypothesis_count"]) == (1, 1)


async def test_repeated_turn_key_replays_and_stores_nothing_twice(
    client, make_case, alice, turn, svc
):
    case = await make_case(alice)
    url = f"/internal/v1/cases/{case['case_id']}/turns"
    body = turn("agent-turn-key-1")
    agent = svc(alice)
    first = (await client.post(url, json=body, headers=agent)).json()
    again = await asyncio.gather(*(client.post(url, json=body, headers=agent) for _ in range(4)))
    for resp in again:
        assert resp.status_code == 200
        assert resp.json() == {**first, "replayed": True}
    msgs = (await client.get(f"/api/v1/cases/{case['case_id']}/messages", headers=alice)).json()
    assert msgs["total_count"] == 2
    nxt = (await client.post(url, json=turn(), headers=agent)).json()
    assert nxt["turn_number"] == 2


async def test_invalid_transition_in_a_turn_stores_nothing(svc, client, make_case, alice, turn):
    case = await make_case(alice)
    cid = case["case_id"]
    resp = await client.post(
        f"/internal/v1/cases/{cid}/turns", json=turn(to_state="resolved"), headers=svc(alice)
    )
    assert resp.status_code == 409
    assert resp.json()["valid_next_states"] == ["investigating", "closed"]
    msgs = (await client.get(f"/api/v1/cases/{cid}/messages", headers=alice)).json()
    assert msgs["total_count"] == 0
    assert (await client.get(f"/api/v1/cases/{cid}", headers=alice)).json()["current_turn"] == 0


async def test_turn_may_move_the_case_to_investigating(svc, client, make_case, alice, turn):
    case = await make_case(alice)
    cid = case["case_id"]
    resp = await client.post(
        f"/internal/v1/cases/{cid}/turns", json=turn(to_state="investigating"), headers=svc(alice)
    )
    assert resp.json()["case_state"] == "investigating"
    assert (await client.get(f"/api/v1/cases/{cid}", headers=alice)).json()["state"] == (
        "investigating"
    )


async def test_turns_without_progress_count_and_reset(svc, client, make_case, alice, turn):
    case = await make_case(alice)
    cid = case["case_id"]
    url = f"/internal/v1/cases/{cid}/turns"
    await client.post(url, json=turn(), headers=svc(alice))
    await client.post(url, json=turn(), headers=svc(alice))
    ctx = (await client.get(f"/internal/v1/cases/{cid}", headers=svc(alice))).json()
    assert ctx["case"]["turns_without_progress"] == 2
    await client.post(url, json=turn(progress_made=True), headers=svc(alice))
    ctx = (await client.get(f"/internal/v1/cases/{cid}", headers=svc(alice))).json()
    assert ctx["case"]["turns_without_progress"] == 0


async def test_bad_turn_body_is_422(client, make_case, alice, turn, svc):
    case = await make_case(alice)
    url = f"/internal/v1/cases/{case['case_id']}/turns"
    for body in (
        turn("short"),
        turn(extra_field=1),
        {"turn_key": "valid-key-1", "user_message": {"content": "x"}},
        turn(investigation={"hypotheses": [{"hypothesis_id": "h", "text": "t", "likelihood": 2}]}),
        turn(assistant_message={"content": "a", "token_count": 10**30}),
    ):
        assert (await client.post(url, json=body, headers=svc(alice))).status_code == 422


async def test_case_context_with_history_carries_the_last_n_messages(
    svc, client, make_case, alice, turn
):
    case = await make_case(alice, initial_message="m0")
    cid = case["case_id"]
    for i in range(2):
        body = turn(user_message={"content": f"q{i}"}, assistant_message={"content": f"a{i}"})
        await client.post(f"/internal/v1/cases/{cid}/turns", json=body, headers=svc(alice))
    with_history = (
        await client.get(f"/internal/v1/cases/{cid}?history=3", headers=svc(alice))
    ).json()
    assert [m["content"] for m in with_history["recent_messages"]] == ["a0", "q1", "a1"]
    plain = (await client.get(f"/internal/v1/cases/{cid}", headers=svc(alice))).json()
    assert plain["recent_messages"] == []
    assert plain["case"] == with_history["case"]


async def test_service_token_on_behalf_of_the_owner_reads_the_case(client, make_case, token_issuer):
    owner = "owner-svc-1"
    case = await make_case(token_issuer.headers(owner))
    svc = token_issuer.headers("worker", roles=["service"], on_behalf_of=owner)
    other = token_issuer.headers("worker", roles=["service"], on_behalf_of="someone-else")
    bare = token_issuer.headers("worker", roles=["service"])
    url = f"/internal/v1/cases/{case['case_id']}"
    assert (await client.get(url, headers=svc)).json()["owner_id"] == owner
    assert (await client.get(url, headers=other)).status_code == 404
    assert (await client.get(url, headers=bare)).status_code == 403


async def test_case_client_speaks_the_internal_routes(app, make_case, token_issuer):
    """The typed client other services use, against this app (ASGI transport)."""
    owner = "client-user-1"
    token = token_issuer.service_token(owner, client_id="agent")
    case = await make_case(token_issuer.headers(owner))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as http:
        cc = CaseClient("http://case", http)
        ctx = await cc.get_case(case["case_id"], token=token)
        assert ctx.case.state == CaseState.INQUIRY
        turn = TurnAppendRequest(
            turn_key="client-turn-1",
            user_message=TurnMessage(content="why?"),
            assistant_message=TurnMessage(content="because", metadata={"citations": []}),
        )
        result = await cc.append_turn(case["case_id"], turn, token=token)
        assert result.turn_number == 1
        ctx = await cc.get_case(case["case_id"], history=5, token=token)
        assert [m.content for m in ctx.recent_messages] == ["why?", "because"]
        ctx = await cc.get_case(case["case_id"], history=1, token=token)
        assert [m.content for m in ctx.recent_messages] == ["because"]
        assert ctx.case.current_turn == 1
        bad = turn.model_copy(update={"turn_key": "client-turn-2", "to_state": CaseState.RESOLVED})
        with pytest.raises(Conflict) as conflict:
            await cc.append_turn(case["case_id"], bad, token=token)
        assert conflict.value.code == "INVALID_TRANSITION"
        with pytest.raises(NotFound):
            await cc.get_case(
                case["case_id"], token=token_issuer.service_token("intruder", client_id="agent")
            )


async def test_internal_routes_refuse_a_users_own_token(
    client, make_case, alice, turn, svc, token_issuer
):
    # Issue 16 item 10: with the case service's port reachable, a user's own token on
    # POST .../turns forged an assistant message into their case. Every internal route
    # takes service tokens only (ADR 0135).
    case = await make_case(alice)
    cid = case["case_id"]
    report = (await client.post(f"/api/v1/cases/{cid}/reports", headers=alice)).json()
    forged = turn(assistant_message={"content": "Run rm -rf / to fix it."})
    routes = [
        ("GET", f"/internal/v1/cases/{cid}", None),
        ("POST", f"/internal/v1/cases/{cid}/turns", forged),
        ("PUT", f"/internal/v1/cases/{cid}/reports/{report['report_id']}", {"status": "failed"}),
    ]
    for method, path, body in routes:
        resp = await client.request(method, path, json=body, headers=alice)
        assert resp.status_code == 403, (method, path)
        assert resp.json()["code"] == "SERVICE_ONLY"
    messages = (await client.get(f"/api/v1/cases/{cid}/messages", headers=alice)).json()
    assert messages["total_count"] == 0
    # The agent's service token acting for alice is what works.
    stored = await client.post(f"/internal/v1/cases/{cid}/turns", json=turn(), headers=svc(alice))
    assert stored.status_code == 200
    # A service token acting for nobody is refused too.
    bare = token_issuer.headers("service:agent", roles=["service"])
    assert (await client.get(f"/internal/v1/cases/{cid}", headers=bare)).status_code == 403
