"""POST /internal/v1/evidence/existing: which files of the service token's user still exist
(the worker's orphan sweep asks before it removes a file's chunks from a case)."""

from __future__ import annotations

from fm_common.contracts.evidence import MAX_EXISTING_IDS
from fm_common.testing.tokens import TokenIssuer

PATH = "/internal/v1/evidence/existing"


def service_headers(issuer: TokenIssuer, user_id: str) -> dict[str, str]:
    """A worker service token acting for `user_id`, as the auth service issues it."""
    return issuer.headers("service:worker", roles=["service"], on_behalf_of=user_id)


async def test_existing_files_are_listed_and_deleted_ones_are_not(kit, alice, client, token_issuer):
    kept = (await kit.upload(alice)).json()["file_id"]
    deleted = (await kit.upload(alice, b"other text\n", "b.log")).json()["file_id"]
    assert (
        await client.delete(f"/api/v1/evidence/{deleted}", headers=alice.headers)
    ).status_code == 204

    resp = await client.post(
        PATH,
        json={"file_ids": [deleted, kept, "never-existed", kept]},
        headers=service_headers(token_issuer, alice.user_id),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"file_ids": [kept]}


async def test_another_users_file_is_reported_as_not_existing(
    kit, alice, bob, client, token_issuer
):
    bobs = (await kit.upload(bob)).json()["file_id"]
    as_alice = await client.post(
        PATH, json={"file_ids": [bobs]}, headers=service_headers(token_issuer, alice.user_id)
    )
    assert as_alice.status_code == 200
    assert as_alice.json() == {"file_ids": []}
    as_bob = await client.post(
        PATH, json={"file_ids": [bobs]}, headers=service_headers(token_issuer, bob.user_id)
    )
    assert as_bob.json() == {"file_ids": [bobs]}


async def test_a_users_own_token_is_refused(kit, alice, client):
    own = (await kit.upload(alice)).json()["file_id"]
    resp = await client.post(PATH, json={"file_ids": [own]}, headers=alice.headers)
    assert resp.status_code == 403
    assert resp.json()["code"] == "SERVICE_ONLY"


async def test_a_service_token_acting_for_nobody_is_refused(client, token_issuer):
    headers = token_issuer.headers("service:worker", roles=["service"])
    resp = await client.post(PATH, json={"file_ids": ["x"]}, headers=headers)
    assert resp.status_code == 403


async def test_no_token_is_401(client):
    resp = await client.post(PATH, json={"file_ids": ["x"]})
    assert resp.status_code == 401


async def test_the_batch_is_bounded(client, alice, token_issuer):
    headers = service_headers(token_issuer, alice.user_id)
    ok = await client.post(
        PATH, json={"file_ids": [f"f{i}" for i in range(MAX_EXISTING_IDS)]}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.json() == {"file_ids": []}
    for body in (
        {"file_ids": [f"f{i}" for i in range(MAX_EXISTING_IDS + 1)]},
        {"file_ids": []},
        {"file_ids": ["x" * 101]},
        {"file_ids": ["a"], "owner_id": "someone-else"},
    ):
        resp = await client.post(PATH, json=body, headers=headers)
        assert resp.status_code == 422, body
