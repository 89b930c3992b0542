"""Public case routes on SQLite: create, list, get, update, archive, delete, messages."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest


async def test_create_answers_case_summary_with_placeholder_title(
    client: httpx.AsyncClient, alice, reference
):
    resp = await client.post(
        "/api/v1/cases", json={"title": None, "priority": "low"}, headers=alice
    )
    assert resp.status_code == 201
    body = resp.json()
    reference("CaseSummary", body)
    assert body["title"] == f"Case-{datetime.now(UTC):%m%d}-1"
    assert body["state"] == "inquiry"
    assert body["priority"] == "low"
    assert body["valid_next_states"] == ["investigating", "closed"]
    assert resp.headers["location"] == f"/api/v1/cases/{body['case_id']}"


async def test_placeholder_number_counts_the_users_cases_of_the_day(make_case, alice, bob):
    day = f"{datetime.now(UTC):%m%d}"
    assert (await make_case(alice))["title"] == f"Case-{day}-1"
    assert (await make_case(alice, title="Named"))["title"] == "Named"
    assert (await make_case(alice))["title"] == f"Case-{day}-3"
    assert (await make_case(bob))["title"] == f"Case-{day}-1"


async def test_priority_defaults_to_medium(make_case, alice):
    assert (await make_case(alice))["priority"] == "medium"


async def test_metadata_of_the_extension_is_stored_and_returned(client, alice, reference):
    meta = {"created_via": "browser_extension", "auto_generated": True}
    resp = await client.post(
        "/api/v1/cases",
        json={"title": None, "priority": "medium", "metadata": meta},
        headers=alice,
    )
    assert resp.status_code == 201
    reference("CaseSummary", resp.json())
    assert resp.json()["metadata"] == meta
    case_id = resp.json()["case_id"]
    detail = await client.get(f"/api/v1/cases/{case_id}", headers=alice)
    assert detail.json()["metadata"] == meta
    listed = await client.get("/api/v1/cases", headers=alice)
    assert [c["metadata"] for c in listed.json()["cases"]] == [meta]


async def test_case_without_metadata_returns_an_empty_object(make_case, alice):
    assert (await make_case(alice))["metadata"] == {}


@pytest.mark.parametrize(
    "metadata",
    [["a", "list"], "text", {"big": "x" * (16 * 1024)}, {"nul": "a\u0000b"}],
)
async def test_bad_metadata_is_422(client: httpx.AsyncClient, alice, metadata):
    resp = await client.post("/api/v1/cases", json={"metadata": metadata}, headers=alice)
    assert resp.status_code == 422
    assert resp.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "body",
    [
        {"priority": "urgent"},
        {"title": "x" * 201},
        {"description": "x" * 2001},
        {"initial_message": "x" * 4001},
        {"title": "ok", "owner_id": "someone-else"},
        {"tags": ["a"]},
        {"title": "nul\u0000byte"},
        {"initial_message": "a\u0000b"},
    ],
)
async def test_bad_create_body_is_422(client: httpx.AsyncClient, alice, body):
    resp = await client.post("/api/v1/cases", json=body, headers=alice)
    assert resp.status_code == 422
    assert resp.json()["code"] == "VALIDATION_ERROR"
    assert isinstance(resp.json()["detail"], list)


async def test_body_that_is_not_json_is_422(client: httpx.AsyncClient, alice):
    resp = await client.post(
        "/api/v1/cases", content=b"{not json", headers={**alice, "content-type": "application/json"}
    )
    assert resp.status_code == 422


async def test_initial_message_is_the_first_user_message(client, make_case, alice, reference):
    case = await make_case(alice, initial_message="Checkout is down")
    resp = await client.get(f"/api/v1/cases/{case['case_id']}/messages", headers=alice)
    assert resp.status_code == 200
    body = resp.json()
    reference("CaseMessagesResponse", body)
    assert body["total_count"] == 1
    [msg] = body["messages"]
    assert (msg["role"], msg["content"], msg["turn_number"]) == ("user", "Checkout is down", 0)


async def test_request_without_token_is_401(client: httpx.AsyncClient):
    resp = await client.get("/api/v1/cases")
    assert resp.status_code == 401
    assert resp.headers["x-error-code"] == "UNAUTHORIZED"


async def test_get_answers_case_detail(client, make_case, alice, reference):
    case = await make_case(alice, title="Disk full", description="on db-1")
    resp = await client.get(f"/api/v1/cases/{case['case_id']}", headers=alice)
    assert resp.status_code == 200
    body = resp.json()
    reference("CaseDetail", body)
    assert (body["title"], body["description"]) == ("Disk full", "on db-1")
    assert body["pending_milestones"][0] == "symptom_verified"
    assert resp.headers["etag"] == '"1"'


async def test_unknown_case_is_404(client, alice):
    resp = await client.get("/api/v1/cases/does-not-exist", headers=alice)
    assert resp.status_code == 404
    assert resp.json()["code"] == "CASE_NOT_FOUND"


async def test_list_is_newest_activity_first(client, make_case, alice, reference):
    first = await make_case(alice, title="first")
    await make_case(alice, title="second")
    await client.put(f"/api/v1/cases/{first['case_id']}", json={"title": "first!"}, headers=alice)
    resp = await client.get("/api/v1/cases", headers=alice)
    body = resp.json()
    reference("CaseListResponse", body)
    assert [c["title"] for c in body["cases"]] == ["first!", "second"]


async def test_list_pages_with_total_and_has_more(client, make_case, alice):
    for i in range(5):
        await make_case(alice, title=f"c{i}")
    page1 = (await client.get("/api/v1/cases?limit=2", headers=alice)).json()
    page3 = (await client.get("/api/v1/cases?limit=2&offset=4", headers=alice)).json()
    assert (page1["total_count"], page1["limit"], page1["offset"], page1["has_more"]) == (
        5,
        2,
        0,
        True,
    )
    assert len(page1["cases"]) == 2
    assert [c["title"] for c in page3["cases"]] == ["c0"]
    assert page3["has_more"] is False


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "offset=-1",
        "limit=abc",
        "state=open",
        "offset=99999999999999999999",
        "q=a%00b",
    ],
)
async def test_out_of_range_list_parameters_are_422(client, alice, query):
    resp = await client.get(f"/api/v1/cases?{query}", headers=alice)
    assert resp.status_code == 422


async def test_list_filters_by_state_source_and_text(client, make_case, alice):
    a = await make_case(alice, title="Redis latency", description="p99 up")
    await make_case(alice, title="Disk", description="full", source="slack")
    await client.post(
        f"/api/v1/cases/{a['case_id']}/transition",
        json={"to_state": "investigating"},
        headers=alice,
    )

    async def titles(query: str) -> list[str]:
        resp = await client.get(f"/api/v1/cases?{query}", headers=alice)
        return [c["title"] for c in resp.json()["cases"]]

    assert await titles("state=investigating") == ["Redis latency"]
    assert await titles("source=slack") == ["Disk"]
    assert await titles("q=LATENCY") == ["Redis latency"]
    assert await titles("q=full") == ["Disk"]
    assert await titles("q=%25") == []  # a literal %, not a wildcard


async def test_archive_hides_the_case_from_the_default_list(client, make_case, alice):
    case = await make_case(alice)
    resp = await client.post(f"/api/v1/cases/{case['case_id']}/archive", headers=alice)
    assert resp.status_code == 200
    assert resp.json()["is_archived"] is True
    default = (await client.get("/api/v1/cases", headers=alice)).json()
    everything = (await client.get("/api/v1/cases?include_archived=true", headers=alice)).json()
    assert default["total_count"] == 0
    assert [c["case_id"] for c in everything["cases"]] == [case["case_id"]]


async def test_update_changes_fields_and_bumps_version(client, make_case, alice):
    case = await make_case(alice)
    resp = await client.put(
        f"/api/v1/cases/{case['case_id']}",
        json={"title": "New", "description": "More"},
        headers=alice,
    )
    assert resp.status_code == 200
    assert (resp.json()["title"], resp.json()["description"], resp.json()["version"]) == (
        "New",
        "More",
        2,
    )
    stored = (await client.get(f"/api/v1/cases/{case['case_id']}", headers=alice)).json()
    assert stored["title"] == "New"


async def test_stale_if_match_is_409_with_both_versions(client, make_case, alice):
    case = await make_case(alice)
    url = f"/api/v1/cases/{case['case_id']}"
    ok = await client.put(url, json={"title": "A"}, headers={**alice, "If-Match": "1"})
    assert ok.status_code == 200
    stale = await client.put(url, json={"title": "B"}, headers={**alice, "If-Match": '"1"'})
    assert stale.status_code == 409
    assert stale.json()["code"] == "VERSION_CONFLICT"
    assert stale.headers["x-expected-version"] == "1"
    assert stale.headers["x-actual-version"] == "2"
    assert (await client.get(url, headers=alice)).json()["title"] == "A"


async def test_malformed_if_match_is_422(client, make_case, alice):
    case = await make_case(alice)
    resp = await client.put(
        f"/api/v1/cases/{case['case_id']}", json={"title": "A"}, headers={**alice, "If-Match": "x"}
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "INVALID_IF_MATCH"


async def test_update_rejects_unknown_fields(client, make_case, alice):
    case = await make_case(alice)
    resp = await client.put(
        f"/api/v1/cases/{case['case_id']}", json={"owner_id": "x"}, headers=alice
    )
    assert resp.status_code == 422


async def test_state_in_update_goes_through_the_state_machine(client, make_case, alice):
    case = await make_case(alice)
    url = f"/api/v1/cases/{case['case_id']}"
    bad = await client.put(url, json={"state": "resolved"}, headers=alice)
    assert bad.status_code == 409
    assert bad.json()["code"] == "INVALID_TRANSITION"
    good = await client.put(url, json={"state": "investigating"}, headers=alice)
    assert good.json()["state"] == "investigating"


async def test_delete_is_idempotent_and_removes_the_case(client, make_case, alice):
    case = await make_case(alice, initial_message="hello")
    url = f"/api/v1/cases/{case['case_id']}"
    assert (await client.delete(url, headers=alice)).status_code == 204
    assert (await client.delete(url, headers=alice)).status_code == 204
    assert (await client.get(url, headers=alice)).status_code == 404
    assert (await client.get(f"{url}/messages", headers=alice)).status_code == 404
    assert (await client.get("/api/v1/cases", headers=alice)).json()["total_count"] == 0


async def test_messages_page_oldest_first(client, make_case, alice, turn, svc):
    case = await make_case(alice, initial_message="m0")
    url = f"/internal/v1/cases/{case['case_id']}/turns"
    for i in range(1, 4):
        body = turn(user_message={"content": f"q{i}"}, assistant_message={"content": f"a{i}"})
        assert (await client.post(url, json=body, headers=svc(alice))).status_code == 200
    page = (
        await client.get(
            f"/api/v1/cases/{case['case_id']}/messages?limit=3&offset=1", headers=alice
        )
    ).json()
    assert [m["content"] for m in page["messages"]] == ["q1", "a1", "q2"]
    assert [m["turn_number"] for m in page["messages"]] == [1, 1, 2]
    assert (page["total_count"], page["has_more"], page["next_offset"]) == (7, True, 4)
    last = (
        await client.get(f"/api/v1/cases/{case['case_id']}/messages?offset=5", headers=alice)
    ).json()
    assert [m["content"] for m in last["messages"]] == ["q3", "a3"]
    assert (last["has_more"], last["next_offset"]) == (False, None)


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "offset=-5", "offset=1e30", f"offset={10**20}"]
)
async def test_bad_message_paging_is_422(client, make_case, alice, query):
    case = await make_case(alice)
    resp = await client.get(f"/api/v1/cases/{case['case_id']}/messages?{query}", headers=alice)
    assert resp.status_code == 422


async def test_a_failed_commit_is_an_error_answer_not_a_2xx(app, client, make_case, alice):
    """The session commits before the response is sent (a commit error must be seen)."""
    from sqlalchemy import event

    case = await make_case(alice)
    engine = app.state.engine.sync_engine

    def refuse(_conn):
        raise RuntimeError("disk gone at commit")

    event.listen(engine, "commit", refuse)
    try:
        resp = await client.put(
            f"/api/v1/cases/{case['case_id']}", json={"title": "lost?"}, headers=alice
        )
    finally:
        event.remove(engine, "commit", refuse)
    assert resp.status_code == 500
    assert "disk gone" not in resp.text
    stored = (await client.get(f"/api/v1/cases/{case['case_id']}", headers=alice)).json()
    assert stored["title"] != "lost?"


async def test_put_that_changes_nothing_keeps_the_version(client, make_case, alice):
    case = await make_case(alice, title="Same")
    url = f"/api/v1/cases/{case['case_id']}"
    resp = await client.put(url, json={"title": "Same"}, headers={**alice, "If-Match": "1"})
    assert resp.status_code == 200
    assert resp.json()["version"] == 1


async def test_include_empty_false_hides_cases_without_turns(svc, client, make_case, alice, turn):
    empty = await make_case(alice, title="empty")
    talked = await make_case(alice, title="talked")
    await client.post(
        f"/internal/v1/cases/{talked['case_id']}/turns", json=turn(), headers=svc(alice)
    )
    body = (await client.get("/api/v1/cases?include_empty=false", headers=alice)).json()
    assert [c["title"] for c in body["cases"]] == ["talked"]
    everything = (await client.get("/api/v1/cases", headers=alice)).json()
    assert {c["case_id"] for c in everything["cases"]} == {empty["case_id"], talked["case_id"]}
