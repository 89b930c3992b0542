"""Broken object-level authorization: another user's case is 404 on every route."""

from __future__ import annotations

import pytest

from fm_common.jobs import JobStore


@pytest.fixture
async def victim(svc, client, make_case, alice, turn, app):
    case = await make_case(alice, title="secret outage", initial_message="private")
    cid = case["case_id"]
    await client.post(f"/internal/v1/cases/{cid}/turns", json=turn(), headers=svc(alice))
    created = await client.post(f"/api/v1/cases/{cid}/reports", headers=alice)
    assert created.status_code == 202
    return {"case_id": cid, **created.json()}


def _routes(v: dict) -> list[tuple[str, str, dict | None]]:
    c, r, j = v["case_id"], v["report_id"], v["job_id"]
    return [
        ("GET", f"/api/v1/cases/{c}", None),
        ("PUT", f"/api/v1/cases/{c}", {"title": "pwned"}),
        ("POST", f"/api/v1/cases/{c}/transition", {"to_state": "closed"}),
        ("POST", f"/api/v1/cases/{c}/archive", None),
        ("GET", f"/api/v1/cases/{c}/messages", None),
        ("GET", f"/api/v1/cases/{c}/ui", None),
        ("POST", f"/api/v1/cases/{c}/reports", None),
        ("GET", f"/api/v1/cases/{c}/reports", None),
        ("GET", f"/api/v1/cases/{c}/reports/{r}", None),
        ("GET", f"/api/v1/cases/{c}/reports/jobs/{j}", None),
        ("GET", f"/internal/v1/cases/{c}", None),
        (
            "POST",
            f"/internal/v1/cases/{c}/turns",
            {
                "turn_key": "bob-turn-1",
                "user_message": {"content": "x"},
                "assistant_message": {"content": "y"},
            },
        ),
        ("PUT", f"/internal/v1/cases/{c}/reports/{r}", {"status": "completed", "content": "x"}),
    ]


async def test_other_user_gets_404_on_every_case_route(client, victim, bob, alice, svc):
    for method, path, body in _routes(victim):
        # The internal routes take service tokens only: one acting for bob.
        headers = svc(bob) if path.startswith("/internal/") else bob
        resp = await client.request(method, path, json=body, headers=headers)
        assert resp.status_code == 404, (method, path, resp.status_code)
        assert "secret" not in resp.text
    # Nothing bob tried changed alice's case.
    own = (await client.get(f"/api/v1/cases/{victim['case_id']}", headers=alice)).json()
    assert (own["title"], own["state"], own["current_turn"]) == ("secret outage", "inquiry", 1)
    assert own["is_archived"] is False
    reports = (await client.get(f"/api/v1/cases/{victim['case_id']}/reports", headers=alice)).json()
    assert reports["total_count"] == 1
    assert reports["reports"][0]["status"] == "pending"


async def test_other_users_delete_is_204_but_deletes_nothing(client, victim, bob, alice):
    resp = await client.delete(f"/api/v1/cases/{victim['case_id']}", headers=bob)
    assert resp.status_code == 204
    assert (
        await client.get(f"/api/v1/cases/{victim['case_id']}", headers=alice)
    ).status_code == 200


async def test_lists_never_show_foreign_rows(client, victim, bob, make_case):
    await make_case(bob, title="bob's own")
    for query in ("", "?include_archived=true", "?q=secret", "?state=inquiry"):
        body = (await client.get(f"/api/v1/cases{query}", headers=bob)).json()
        assert all(c["case_id"] != victim["case_id"] for c in body["cases"])
        assert all(c["title"] != "secret outage" for c in body["cases"])
    assert (await client.get("/api/v1/cases", headers=bob)).json()["total_count"] == 1


async def test_job_of_another_case_is_404(client, victim, make_case, alice, app):
    other = await make_case(alice)
    resp = await client.get(
        f"/api/v1/cases/{other['case_id']}/reports/jobs/{victim['job_id']}", headers=alice
    )
    assert resp.status_code == 404
    assert await JobStore(app.state.redis).get(victim["job_id"]) is not None


async def test_every_route_needs_a_valid_token(client, victim, token_issuer):
    forged = {"Authorization": "Bearer not-a-token", "X-User-ID": "alice"}
    expired = token_issuer.headers("alice", ttl=-120)
    for method, path, body in [*_routes(victim), ("GET", "/api/v1/cases", None)]:
        for headers in ({}, forged, expired):
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status_code == 401, (method, path, resp.status_code)
