"""Another user's knowledge is invisible: searches, reads, deletes, lists, cases."""

from __future__ import annotations

import uuid

import pytest

SECRET_TEXT = (
    "# Vault unseal procedure for cluster zebra-{tag}\n\n"
    "## Steps\n\nThe zebra-{tag} vault is unsealed with three of the five key shares held by "
    "the platform team. Run vault operator unseal on each of the pods vault-0, vault-1 and "
    "vault-2 of zebra-{tag}.\n"
)


def _user() -> str:
    return f"user-{uuid.uuid4()}"


@pytest.fixture(scope="module")
def alice_doc(kapi) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    alice, tag = _user(), uuid.uuid4().hex[:8]
    doc = kapi.ingest(alice, "vault.md", SECRET_TEXT.format(tag=tag).encode(), title="Vault unseal")
    assert doc["status"] == "processed", doc
    return alice, doc["document_id"], tag


@pytest.fixture(scope="module")
def alice_case(kapi) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    alice, case_id, tag = _user(), str(uuid.uuid4()), uuid.uuid4().hex[:8]
    text = f"Case notes: the payments-{tag} service returned HTTP 502 after the ingress change."
    doc = kapi.ingest(
        alice, "notes.txt", text.encode(), scope="case", case_id=case_id, title="Case notes"
    )
    assert doc["status"] == "processed", doc
    return alice, case_id, tag


def test_owner_finds_own_personal_document(kapi, alice_doc) -> None:  # type: ignore[no-untyped-def]
    alice, doc_id, tag = alice_doc
    results = kapi.search(alice, f"how do I unseal vault on zebra-{tag}").json()["results"]
    assert results
    assert results[0]["document_id"] == doc_id
    assert results[0]["scope"] == "personal"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"mode": "hybrid"},
        {"scopes": ["personal"]},
        {"scopes": ["personal", "global", "case"], "case_id": "whatever"},
        {"limit": 100, "similarity_threshold": 0.0},
    ],
)
def test_other_user_never_finds_my_personal_document(kapi, alice_doc, body) -> None:  # type: ignore[no-untyped-def]
    _, doc_id, tag = alice_doc
    bob = _user()
    for query in (f"vault unseal zebra-{tag}", SECRET_TEXT.format(tag=tag), doc_id, "vault"):
        resp = kapi.search(bob, query, **body)
        assert resp.status_code == 200, resp.text
        assert all(r["document_id"] != doc_id for r in resp.json()["results"])


def test_other_user_gets_404_for_my_document_by_id(kapi, alice_doc) -> None:  # type: ignore[no-untyped-def]
    alice, doc_id, _ = alice_doc
    bob = _user()
    path = f"/api/v1/knowledge/documents/{doc_id}"
    assert kapi.get(bob, path).status_code == 404
    assert kapi.delete(bob, path).status_code == 404
    listed = kapi.get(bob, "/api/v1/knowledge/documents?limit=100").json()["documents"]
    assert doc_id not in {d["document_id"] for d in listed}
    # Still there for its owner.
    assert kapi.get(alice, path).json()["status"] == "processed"


def test_other_user_gets_404_for_my_case(kapi, alice_case) -> None:  # type: ignore[no-untyped-def]
    alice, case_id, tag = alice_case
    bob = _user()
    query = f"payments-{tag} 502 after ingress change"
    mine = kapi.search(alice, query, case_id=case_id).json()["results"]
    assert mine
    assert mine[0]["scope"] == "case"
    assert kapi.search(bob, query, case_id=case_id).status_code == 404
    assert kapi.search(bob, query, scopes=["case"], case_id=case_id).status_code == 404
    without_case = kapi.search(bob, query).json()["results"]
    assert all(r["scope"] != "case" for r in without_case)
    # Nor can Bob write into Alice's case collection.
    resp = kapi.upload(bob, "x.txt", b"bob was here", scope="case", case_id=case_id)
    assert resp.status_code == 404


def test_deleting_a_document_removes_it_from_results_at_once(kapi) -> None:  # type: ignore[no-untyped-def]
    carol, tag = _user(), uuid.uuid4().hex[:8]
    text = f"Runbook: when the kiwi-{tag} queue backs up, scale the kiwi-{tag} consumers to ten."
    doc = kapi.ingest(carol, "kiwi.md", text.encode())
    query = f"kiwi-{tag} queue backs up"
    for mode in ("semantic", "hybrid"):
        ids = [r["document_id"] for r in kapi.search(carol, query, mode=mode).json()["results"]]
        assert doc["document_id"] in ids
    path = f"/api/v1/knowledge/documents/{doc['document_id']}"
    assert kapi.delete(carol, path).status_code == 204
    for mode in ("semantic", "hybrid"):
        ids = [r["document_id"] for r in kapi.search(carol, query, mode=mode).json()["results"]]
        assert doc["document_id"] not in ids
    assert kapi.get(carol, path).status_code == 404
    assert kapi.chroma_count(f"user_{carol}", doc["document_id"]) == (0, 0)


def test_deleting_a_case_collection_is_owner_scoped_and_idempotent(kapi) -> None:  # type: ignore[no-untyped-def]
    dave, case_id, tag = _user(), str(uuid.uuid4()), uuid.uuid4().hex[:8]
    doc = kapi.ingest(
        dave,
        "case.log",
        f"ERROR mango-{tag} OOMKilled\n".encode() * 3,
        scope="case",
        case_id=case_id,
        document_type="log",
    )
    assert doc["status"] == "processed"
    path = f"/internal/v1/collections/case/{case_id}"

    def as_worker(user: str) -> int:
        # The worker's case cleanup: a service token acting for the user.
        headers = kapi.issuer.headers("service:worker", roles=["service"], on_behalf_of=user)
        return int(kapi.client.delete(path, headers=headers).status_code)

    assert as_worker(_user()) == 404
    # A user's own token is refused on an internal route (issue 16 item 10).
    own = kapi.delete(dave, path)
    assert own.status_code == 403
    assert own.json()["code"] == "SERVICE_ONLY"
    assert kapi.search(dave, f"mango-{tag} OOMKilled", case_id=case_id).json()["results"]
    assert as_worker(dave) == 204
    assert as_worker(dave) == 204
    assert kapi.get(dave, f"/api/v1/knowledge/documents/{doc['document_id']}").status_code == 404
    gone = kapi.search(dave, f"mango-{tag} OOMKilled", scopes=["case"], case_id=case_id)
    assert gone.json()["results"] == []
    anywhere = kapi.search(dave, f"mango-{tag} OOMKilled", case_id=case_id).json()["results"]
    assert all(r["document_id"] != doc["document_id"] for r in anywhere)


def test_hybrid_ranks_an_exact_error_code_first(kapi) -> None:  # type: ignore[no-untyped-def]
    erin, code = _user(), f"ERR{uuid.uuid4().hex[:6].upper()}"
    target = kapi.ingest(
        erin, "codes.md", f"# Error {code}\n\nRaised when the licence expired.".encode()
    )
    for i in range(3):
        kapi.ingest(
            erin, f"other{i}.md", f"# Licence {i}\n\nThe licence server renews licences.".encode()
        )
    # Her own knowledge base only: the stack is shared, and other tests' global runbooks
    # would otherwise compete for first place.
    top = kapi.search(
        erin, f"what does {code} mean", mode="hybrid", limit=3, scopes=["personal"]
    ).json()["results"]
    assert top[0]["document_id"] == target["document_id"], [r["title"] for r in top]
    assert "bm25_score" in top[0]["metadata"]


def test_job_of_another_user_is_404(kapi) -> None:  # type: ignore[no-untyped-def]
    frank = _user()
    resp = kapi.upload(frank, "f.txt", b"frank's notes about the disk")
    location = resp.headers["location"]
    assert kapi.get(frank, location).status_code == 200
    assert kapi.get(_user(), location).status_code == 404
