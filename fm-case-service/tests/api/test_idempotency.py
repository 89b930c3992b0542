"""Idempotency-Key on POST /cases: one case per (user, key), even under a race."""

from __future__ import annotations

import asyncio

import pytest


async def test_repeat_returns_the_first_answer_and_creates_nothing(client, alice):
    headers = {**alice, "Idempotency-Key": "create-abc-123"}
    first = await client.post("/api/v1/cases", json={"title": None}, headers=headers)
    second = await client.post("/api/v1/cases", json={"title": None}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    listed = (await client.get("/api/v1/cases", headers=alice)).json()
    assert listed["total_count"] == 1


async def test_racing_requests_with_one_key_create_one_case(client, alice):
    headers = {**alice, "Idempotency-Key": "race-key-0001"}
    body = {"title": "raced", "initial_message": "once"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/cases", json=body, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["case_id"] for r in answers}) == 1
    listed = (await client.get("/api/v1/cases", headers=alice)).json()
    assert listed["total_count"] == 1
    case_id = listed["cases"][0]["case_id"]
    messages = (await client.get(f"/api/v1/cases/{case_id}/messages", headers=alice)).json()
    assert messages["total_count"] == 1


async def test_same_key_of_two_users_are_two_cases(client, alice, bob):
    key = {"Idempotency-Key": "shared-key-1"}
    a = await client.post("/api/v1/cases", json={}, headers={**alice, **key})
    b = await client.post("/api/v1/cases", json={}, headers={**bob, **key})
    assert a.json()["case_id"] != b.json()["case_id"]
    assert b.json()["user_id"] != a.json()["user_id"]


async def test_key_reused_with_another_body_is_422(client, alice):
    headers = {**alice, "Idempotency-Key": "reused-key-1"}
    await client.post("/api/v1/cases", json={"title": "one"}, headers=headers)
    resp = await client.post("/api/v1/cases", json={"title": "two"}, headers=headers)
    assert resp.status_code == 422
    assert resp.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert (await client.get("/api/v1/cases", headers=alice)).json()["total_count"] == 1


@pytest.mark.parametrize("key", ["short", "has space in it", "semi;colon-key", "x" * 256, "é" * 10])
async def test_malformed_key_is_422_and_creates_nothing(client, alice, key):
    resp = await client.post(
        "/api/v1/cases", json={}, headers={**alice, "Idempotency-Key": key.encode("utf-8")}
    )
    assert resp.status_code == 422
    assert (await client.get("/api/v1/cases", headers=alice)).json()["total_count"] == 0


async def test_replay_survives_the_case_being_deleted(client, alice):
    headers = {**alice, "Idempotency-Key": "deleted-key-1"}
    first = await client.post("/api/v1/cases", json={}, headers=headers)
    await client.delete(f"/api/v1/cases/{first.json()['case_id']}", headers=alice)
    again = await client.post("/api/v1/cases", json={}, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert (await client.get("/api/v1/cases", headers=alice)).json()["total_count"] == 0
