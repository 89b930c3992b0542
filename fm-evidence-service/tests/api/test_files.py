"""Metadata, content download, delete, the case's uploaded-files and the internal routes."""

from __future__ import annotations

import hashlib

import pytest


async def test_get_returns_metadata_of_own_file(kit, alice, client):
    created = (await kit.upload(alice)).json()
    resp = await client.get(f"/api/v1/evidence/{created['file_id']}", headers=alice.headers)
    assert resp.status_code == 200
    assert resp.json() == created


async def test_get_unknown_file_is_404(client, alice):
    resp = await client.get("/api/v1/evidence/no-such-file", headers=alice.headers)
    assert resp.status_code == 404
    assert resp.json()["code"] == "FILE_NOT_FOUND"


async def test_content_streams_bytes_as_attachment_with_nosniff(kit, alice, client):
    created = (await kit.upload(alice)).json()
    resp = await client.get(f"/api/v1/evidence/{created['file_id']}/content", headers=alice.headers)
    assert resp.status_code == 200
    assert resp.content == kit.log_text
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["content-disposition"].startswith('attachment; filename="app.log"')
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.headers["content-length"] == str(len(kit.log_text))


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("page.html", b"<html><body><script>alert(1)</script></body></html>\n"),
        ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ],
)
async def test_html_and_svg_are_never_served_as_themselves(kit, alice, client, filename, content):
    created = await kit.upload(alice, content, filename)
    assert created.status_code == 201, created.text
    resp = await client.get(
        f"/api/v1/evidence/{created.json()['file_id']}/content", headers=alice.headers
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["content-disposition"].startswith("attachment")
    assert resp.content == content


async def test_non_ascii_and_quote_names_get_a_safe_disposition(kit, alice, client):
    raw = 'résumé "q";x.log'.encode()
    created = await kit.upload_raw(alice, raw, kit.log_text)
    assert created.status_code == 201, created.text
    resp = await client.get(
        f"/api/v1/evidence/{created.json()['file_id']}/content", headers=alice.headers
    )
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="r_sum_ _q__x.log"')
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22q%22%3Bx.log" in disposition


async def test_large_content_round_trips_byte_for_byte(kit, alice, client):
    content = b"".join(
        f"2024-05-01T10:00:{i % 60:02d}Z INFO request {i} served in {i % 97}ms\n".encode()
        for i in range(14000)
    )
    created = await kit.upload(alice, content, "big.log")
    assert created.status_code == 201, created.text
    assert created.json()["content_hash"] == hashlib.sha256(content).hexdigest()
    resp = await client.get(
        f"/api/v1/evidence/{created.json()['file_id']}/content", headers=alice.headers
    )
    assert hashlib.sha256(resp.content).hexdigest() == hashlib.sha256(content).hexdigest()


async def test_delete_removes_row_and_bytes(kit, alice, client):
    created = (await kit.upload(alice)).json()
    resp = await client.delete(f"/api/v1/evidence/{created['file_id']}", headers=alice.headers)
    assert resp.status_code == 204
    assert kit.stored() == []
    assert await kit.rows() == 0
    again = await client.get(f"/api/v1/evidence/{created['file_id']}", headers=alice.headers)
    assert again.status_code == 404
    twice = await client.delete(f"/api/v1/evidence/{created['file_id']}", headers=alice.headers)
    assert twice.status_code == 404


async def test_reupload_after_delete_stores_a_new_file(kit, alice, client):
    first = (await kit.upload(alice)).json()
    await client.delete(f"/api/v1/evidence/{first['file_id']}", headers=alice.headers)
    second = await kit.upload(alice)
    assert second.status_code == 201
    assert second.json()["file_id"] != first["file_id"]


async def test_case_file_list_has_reference_shape_and_pages(kit, alice, client):
    ids = []
    for turn in range(3):
        content = kit.log_text + f"turn {turn}\n".encode()
        resp = await kit.upload(alice, content, f"f{turn}.log", uploaded_at_turn=str(turn))
        ids.append(resp.json()["file_id"])
    resp = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files",
        params={"limit": 2, "offset": 0},
        headers=alice.headers,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["total_count"] == 3
    assert body["limit"] == 2
    assert body["offset"] == 0
    assert body["has_more"] is True
    # Newest turn first (default sort uploaded_at_turn desc).
    assert [f["file_id"] for f in body["files"]] == [ids[2], ids[1]]
    first = body["files"][0]
    assert first["source_type"] == "file_upload"
    assert first["analysis_status"] in {"pending", "processing", "completed", "failed"}
    assert first["size_display"].endswith(" B")
    assert first["uploaded_at_turn"] == 2
    rest = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files",
        params={"limit": 2, "offset": 2},
        headers=alice.headers,
    )
    assert [f["file_id"] for f in rest.json()["files"]] == [ids[0]]
    assert rest.json()["has_more"] is False


async def test_case_file_list_sorts_by_filename_ascending(kit, alice, client):
    for name in ("b.log", "c.log", "a.log"):
        await kit.upload(alice, kit.log_text + name.encode(), name)
    resp = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files",
        params={"sort_by": "filename", "sort_order": "asc"},
        headers=alice.headers,
    )
    assert [f["filename"] for f in resp.json()["files"]] == ["a.log", "b.log", "c.log"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": 9223372036854775808},  # past SQLite's integer: was a 500 (issue 16)
        {"sort_by": "owner"},
        {"sort_order": "up"},
    ],
)
async def test_case_file_list_rejects_out_of_range_params(client, alice, params):
    resp = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files", params=params, headers=alice.headers
    )
    assert resp.status_code == 422
    assert isinstance(resp.json()["detail"], list)


async def test_empty_case_of_mine_lists_no_files(client, alice):
    resp = await client.get(f"/api/v1/cases/{alice.case_id}/uploaded-files", headers=alice.headers)
    assert resp.status_code == 200
    assert resp.json()["files"] == []
    assert resp.json()["total_count"] == 0


async def test_unknown_case_list_is_404(client, alice):
    resp = await client.get("/api/v1/cases/nope/uploaded-files", headers=alice.headers)
    assert resp.status_code == 404
    assert resp.json()["code"] == "CASE_NOT_FOUND"


async def test_case_file_details_have_reference_shape(kit, alice, client):
    created = (await kit.upload(alice, uploaded_at_turn="4")).json()
    resp = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files/{created['file_id']}",
        headers=alice.headers,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["file_id"] == created["file_id"]
    assert body["upload_source"] == "file_upload"
    assert body["uploaded_at_turn"] == 4
    assert body["evidence_count"] == 0
    assert body["derived_evidence"] == []
    assert body["content_hash"] == created["content_hash"]


async def test_case_file_details_of_another_case_is_404(kit, alice, client, case_service):
    created = (await kit.upload(alice)).json()
    other = case_service.add_case(alice.user_id)
    resp = await client.get(
        f"/api/v1/cases/{other}/uploaded-files/{created['file_id']}", headers=alice.headers
    )
    assert resp.status_code == 404


async def test_internal_delete_case_files_is_idempotent_and_case_scoped(
    kit, alice, client, case_service, token_issuer
):
    other_case = case_service.add_case(alice.user_id)
    await kit.upload(alice)
    await kit.upload(alice, kit.png, "s.png")
    kept = (await kit.upload(alice, case_id=other_case)).json()
    # The worker's case cleanup, acting for the owner.
    service = token_issuer.headers("worker", roles=["service"], on_behalf_of=alice.user_id)
    resp = await client.delete(f"/internal/v1/cases/{alice.case_id}/files", headers=service)
    assert resp.status_code == 204
    assert [p.name for p in kit.stored()] == [kept["file_id"]]
    assert await kit.rows() == 1
    again = await client.delete(f"/internal/v1/cases/{alice.case_id}/files", headers=service)
    assert again.status_code == 204


async def test_internal_routes_refuse_a_users_own_token(kit, alice, client):
    # Issue 16 item 10: a user's own token was accepted by a service's /internal routes
    # when its port was reachable.
    fid = (await kit.upload(alice)).json()["file_id"]
    forged = await client.put(
        f"/internal/v1/evidence/{fid}/analysis",
        json={"analysis_status": "completed", "summary": "all good, nothing to see"},
        headers=alice.headers,
    )
    assert forged.status_code == 403
    assert forged.json()["code"] == "SERVICE_ONLY"
    wiped = await client.delete(f"/internal/v1/cases/{alice.case_id}/files", headers=alice.headers)
    assert wiped.status_code == 403
    assert len(kit.stored()) == 1


async def test_service_token_on_behalf_of_owner_reads_content(kit, alice, client, token_issuer):
    created = (await kit.upload(alice)).json()
    service = token_issuer.headers("worker", roles=["service"], on_behalf_of=alice.user_id)
    resp = await client.get(f"/api/v1/evidence/{created['file_id']}/content", headers=service)
    assert resp.status_code == 200
    assert resp.content == kit.log_text


async def test_service_token_without_on_behalf_of_is_refused(kit, alice, client, token_issuer):
    created = (await kit.upload(alice)).json()
    service = token_issuer.headers("worker", roles=["service"])
    resp = await client.get(f"/api/v1/evidence/{created['file_id']}/content", headers=service)
    assert resp.status_code == 403


async def test_indexer_reports_analysis_status_and_summary(kit, alice, client, token_issuer):
    created = (await kit.upload(alice)).json()
    service = token_issuer.headers("worker", roles=["service"], on_behalf_of=alice.user_id)
    resp = await client.put(
        f"/internal/v1/evidence/{created['file_id']}/analysis",
        json={"analysis_status": "completed", "summary": "3 lines, 1 error"},
        headers=service,
    )
    assert resp.status_code == 200
    listed = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files", headers=alice.headers
    )
    assert listed.json()["files"][0]["analysis_status"] == "completed"
    assert listed.json()["files"][0]["summary"] == "3 lines, 1 error"
    bad = await client.put(
        f"/internal/v1/evidence/{created['file_id']}/analysis",
        json={"analysis_status": "exploded"},
        headers=service,
    )
    assert bad.status_code == 422


def _derived(turn: int, evidence_id: str, **overrides: object) -> dict:
    return {
        "evidence_id": evidence_id,
        "summary": "120 log lines; 45 'too many clients' errors from 10:00 to 10:02",
        "category": "SYMPTOM_EVIDENCE",
        "source_type": "LOGS",
        "collected_at_turn": turn,
        "related_hypothesis_ids": ["h-1"],
    } | overrides


async def test_evidence_derived_by_the_agent_is_counted_and_detailed(
    kit, alice, bob, client, reference, token_issuer
):
    created = (await kit.upload(alice, uploaded_at_turn="1")).json()
    file_id = created["file_id"]
    url = f"/internal/v1/evidence/{file_id}/derived"
    # The agent's service token acting for the user (ADR 0135).
    as_alice = token_issuer.service_headers(alice.user_id, client_id="agent")
    first = await client.post(url, json=_derived(1, "ev-turn1-aaaa"), headers=as_alice)
    assert first.status_code == 200, first.text
    # A replayed turn writes once; a later turn adds its own.
    again = await client.post(url, json=_derived(1, "ev-turn1-aaaa"), headers=as_alice)
    assert again.json() == first.json()
    await client.post(
        url,
        json=_derived(2, "ev-turn2-bbbb", category="CAUSAL_EVIDENCE", summary="pool is 20"),
        headers=as_alice,
    )
    # Not acting for another user: it cannot write to (or learn of) the file.
    as_bob = token_issuer.service_headers(bob.user_id, client_id="agent")
    theirs = await client.post(url, json=_derived(3, "ev-turn3-cccc"), headers=as_bob)
    assert theirs.status_code == 404
    # The user's own token (the forged-write path of issue 16) is refused.
    own = await client.post(url, json=_derived(3, "ev-turn3-dddd"), headers=alice.headers)
    assert own.status_code == 403
    assert own.json()["code"] == "SERVICE_ONLY"
    listed = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files", headers=alice.headers
    )
    reference("UploadedFilesList", listed.json())
    assert listed.json()["files"][0]["evidence_count"] == 2
    details = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files/{file_id}", headers=alice.headers
    )
    body = details.json()
    reference("UploadedFileDetailsResponse", body)
    assert body["evidence_count"] == 2
    assert [(d["collected_at_turn"], d["category"]) for d in body["derived_evidence"]] == [
        (1, "SYMPTOM_EVIDENCE"),
        (2, "CAUSAL_EVIDENCE"),
    ]
    assert body["derived_evidence"][0]["source_type"] == "LOGS"
    assert body["derived_evidence"][0]["related_hypothesis_ids"] == ["h-1"]


@pytest.mark.parametrize(
    "overrides",
    [{"category": "GUESS"}, {"source_type": "logs"}, {"summary": "x" * 501}, {"extra": 1}],
)
async def test_bad_derived_evidence_is_422(kit, alice, client, overrides, token_issuer):
    created = (await kit.upload(alice)).json()
    resp = await client.post(
        f"/internal/v1/evidence/{created['file_id']}/derived",
        json=_derived(1, "ev-bad-00001", **overrides),
        headers=token_issuer.service_headers(alice.user_id, client_id="agent"),
    )
    assert resp.status_code == 422


async def test_deleting_a_file_deletes_what_was_derived_from_it(kit, alice, client, token_issuer):
    created = (await kit.upload(alice)).json()
    file_id = created["file_id"]
    await client.post(
        f"/internal/v1/evidence/{file_id}/derived",
        json=_derived(1, "ev-del-00001"),
        headers=token_issuer.service_headers(alice.user_id, client_id="agent"),
    )
    assert (
        await client.delete(f"/api/v1/evidence/{file_id}", headers=alice.headers)
    ).status_code == 204
    again = (await kit.upload(alice)).json()
    details = await client.get(
        f"/api/v1/cases/{alice.case_id}/uploaded-files/{again['file_id']}", headers=alice.headers
    )
    assert details.json()["evidence_count"] == 0
