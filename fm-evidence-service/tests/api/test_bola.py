"""A second user tries every evidence route with the first user's ids: all 404."""

from __future__ import annotations

import pytest


async def test_other_user_gets_404_on_every_evidence_route(kit, alice, bob, client, token_issuer):
    file = (await kit.upload(alice)).json()
    fid, cid = file["file_id"], alice.case_id
    attempts = {
        "get": await client.get(f"/api/v1/evidence/{fid}", headers=bob.headers),
        "content": await client.get(f"/api/v1/evidence/{fid}/content", headers=bob.headers),
        "delete": await client.delete(f"/api/v1/evidence/{fid}", headers=bob.headers),
        "list": await client.get(f"/api/v1/cases/{cid}/uploaded-files", headers=bob.headers),
        "details": await client.get(
            f"/api/v1/cases/{cid}/uploaded-files/{fid}", headers=bob.headers
        ),
        "upload": await kit.upload(bob, b"bob's log line\n", "b.log", case_id=cid),
        "analysis": await client.put(
            f"/internal/v1/evidence/{fid}/analysis",
            json={"analysis_status": "failed"},
            headers=token_issuer.headers("worker", roles=["service"], on_behalf_of=bob.user_id),
        ),
    }
    assert {name: r.status_code for name, r in attempts.items()} == dict.fromkeys(attempts, 404)
    # Same body as for an id that never existed: nothing hints that the file exists.
    never = await client.get("/api/v1/evidence/00000000-0000-0000-0000-000000000000",
                             headers=bob.headers)  # fmt: skip
    assert attempts["get"].json() == never.json()
    # Alice's file is untouched.
    mine = await client.get(f"/api/v1/evidence/{fid}/content", headers=alice.headers)
    assert mine.status_code == 200
    assert mine.content == kit.log_text
    assert len(kit.stored()) == 1


async def test_other_user_case_cleanup_does_not_touch_my_files(
    kit, alice, bob, client, token_issuer
):
    await kit.upload(alice)
    as_bob = token_issuer.headers("worker", roles=["service"], on_behalf_of=bob.user_id)
    resp = await client.delete(f"/internal/v1/cases/{alice.case_id}/files", headers=as_bob)
    assert resp.status_code == 204
    assert len(kit.stored()) == 1
    assert await kit.rows() == 1


async def test_same_bytes_from_two_users_are_never_deduplicated_across_them(
    kit, alice, bob, client
):
    mine = (await kit.upload(alice)).json()
    theirs = await kit.upload(bob)
    assert theirs.status_code == 201
    assert theirs.json()["duplicate_of"] is None
    assert theirs.json()["file_id"] != mine["file_id"]


async def test_lists_never_show_foreign_rows(kit, alice, bob, client):
    await kit.upload(alice)
    await kit.upload(bob, b"bob line\n", "bob.log")
    resp = await client.get(f"/api/v1/cases/{bob.case_id}/uploaded-files", headers=bob.headers)
    assert resp.status_code == 200
    assert [f["filename"] for f in resp.json()["files"]] == ["bob.log"]
    assert resp.json()["total_count"] == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/evidence/{fid}"),
        ("GET", "/api/v1/evidence/{fid}/content"),
        ("DELETE", "/api/v1/evidence/{fid}"),
        ("GET", "/api/v1/cases/{cid}/uploaded-files"),
        ("GET", "/api/v1/cases/{cid}/uploaded-files/{fid}"),
        ("DELETE", "/internal/v1/cases/{cid}/files"),
        ("PUT", "/internal/v1/evidence/{fid}/analysis"),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer not-a-jwt", "Basic dXNlcjpwdw=="])
async def test_every_route_needs_a_valid_token(kit, alice, client, method, path, auth):
    fid = (await kit.upload(alice)).json()["file_id"]
    headers = {"Authorization": auth} if auth else {}
    resp = await client.request(
        method,
        path.format(fid=fid, cid=alice.case_id),
        headers=headers,
        json={"analysis_status": "failed"} if method == "PUT" else None,
    )
    assert resp.status_code == 401
    assert resp.json()["code"] in {"UNAUTHORIZED", "INVALID_TOKEN"}
    assert len(kit.stored()) == 1


async def test_expired_token_is_401(kit, alice, client, token_issuer):
    fid = (await kit.upload(alice)).json()["file_id"]
    expired = token_issuer.headers(alice.user_id, ttl=-60)
    resp = await client.get(f"/api/v1/evidence/{fid}", headers=expired)
    assert resp.status_code == 401
    assert resp.json()["code"] == "TOKEN_EXPIRED"
