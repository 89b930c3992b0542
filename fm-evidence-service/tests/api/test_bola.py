"""A second user tries every evidence route with the first user's ids: all 404."""

from __future__ import annotations


async def test_other_user_gets_404_on_every_evidence_route(kit, alice, bob, client):
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
            headers=bob.headers,
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


async def test_other_user_case_cleanup_does_not_touch_my_files(kit, alice, bob, client):
    await kit.upload(alice)
    resp = await client.delete(f"/internal/v1/cases/{alice.case_id}/files", headers=bob.headers)
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
