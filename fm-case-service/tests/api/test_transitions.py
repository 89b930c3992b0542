"""The state machine: every (from, to) pair, valid or not."""

from __future__ import annotations

import itertools

import pytest

STATES = ("inquiry", "investigating", "resolved", "closed")
VALID = {
    ("inquiry", "investigating"),
    ("inquiry", "closed"),
    ("investigating", "resolved"),
    ("investigating", "closed"),
}
PATH_TO = {
    "inquiry": [],
    "investigating": ["investigating"],
    "resolved": ["investigating", "resolved"],
    "closed": ["closed"],
}
NEXT = {
    "inquiry": ["investigating", "closed"],
    "investigating": ["resolved", "closed"],
    "resolved": [],
    "closed": [],
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(STATES, STATES)))
async def test_transition_pair(client, make_case, alice, src, dst):
    case = await make_case(alice)
    url = f"/api/v1/cases/{case['case_id']}/transition"
    for step in PATH_TO[src]:
        assert (await client.post(url, json={"to_state": step}, headers=alice)).status_code == 200
    resp = await client.post(url, json={"to_state": dst, "closure_reason": "done"}, headers=alice)
    stored = (await client.get(f"/api/v1/cases/{case['case_id']}", headers=alice)).json()
    if (src, dst) in VALID:
        assert resp.status_code == 200
        assert resp.json()["state"] == dst
        assert stored["state"] == dst
        assert stored["valid_next_states"] == NEXT[dst]
        assert stored["is_terminal"] is (dst in ("resolved", "closed"))
    else:
        assert resp.status_code == 409
        body = resp.json()
        assert body["code"] == "INVALID_TRANSITION"
        assert resp.headers["x-error-code"] == "INVALID_TRANSITION"
        assert body["valid_next_states"] == NEXT[src]
        assert stored["state"] == src


async def test_resolving_sets_resolved_at_and_closing_sets_reason(client, make_case, alice):
    a = await make_case(alice)
    b = await make_case(alice)
    url_a = f"/api/v1/cases/{a['case_id']}/transition"
    await client.post(url_a, json={"to_state": "investigating"}, headers=alice)
    resolved = (await client.post(url_a, json={"to_state": "resolved"}, headers=alice)).json()
    closed = (
        await client.post(
            f"/api/v1/cases/{b['case_id']}/transition",
            json={"to_state": "closed", "closure_reason": "duplicate"},
            headers=alice,
        )
    ).json()
    assert resolved["resolved_at"] is not None
    assert resolved["closed_at"] is None
    assert closed["closed_at"] is not None
    assert closed["closure_reason"] == "duplicate"


async def test_unknown_target_state_is_422(client, make_case, alice):
    case = await make_case(alice)
    resp = await client.post(
        f"/api/v1/cases/{case['case_id']}/transition", json={"to_state": "done"}, headers=alice
    )
    assert resp.status_code == 422
