"""purge_orphans and evidence chunks: the chunks of files the evidence service says are
gone leave their case collection; nothing is removed without its answer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fm_common.blobs import LocalBlobStore
from fm_common.errors import GatewayTimeout, NotFound, Unauthorized, Unavailable
from knowledge_service.config import Settings
from knowledge_service.domain.documents import cleanup
from knowledge_service.domain.documents.cleanup import purge_orphans
from knowledge_service.domain.documents.models import CaseCollection, Document
from knowledge_service.domain.vectors.bm25 import Bm25Indexes
from knowledge_service.domain.vectors.store import VectorStore

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
VEC = [0.1] * 384


class Evidence:
    """A stand-in of the evidence service's answer: owner -> ids of its existing files."""

    def __init__(self, files: dict[str, set[str]], fail: dict[str, Exception] | None = None):
        self.files = files
        self.fail = fail or {}
        self.asked: list[tuple[str, list[str]]] = []

    def __call__(self, owner_id: str, file_ids: list[str]) -> set[str]:
        self.asked.append((owner_id, list(file_ids)))
        if owner_id in self.fail:
            raise self.fail[owner_id]
        return self.files.get(owner_id, set()) & set(file_ids)


def _evidence_chunks(store: VectorStore, case_id: str, owner: str, file_id: str, n: int) -> None:
    ids = [f"evidence:{file_id}:{i}" for i in range(n)]
    metas = [
        {
            "document_id": file_id,
            "owner_id": owner,
            "case_id": case_id,
            "scope": "case",
            "chunk_index": i,
            "origin": "evidence",
        }
        for i in range(n)
    ]
    store.upsert(f"case_{case_id}", ids, [VEC] * n, ["t"] * n, metas)


def _evidence_ids(store: VectorStore, collection: str) -> set[str]:
    got = store.get_collection(collection).get(where={"origin": "evidence"}, include=["metadatas"])
    return {m["document_id"] for m in got["metadatas"]}


@pytest.fixture
def world(chroma_url: str, kdb, data_dir: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Two owners' cases with evidence chunks of kept and deleted files."""
    store = VectorStore(chroma_url, MINILM)
    _evidence_chunks(store, "c1", "alice", "kept-a", 3)
    _evidence_chunks(store, "c1", "alice", "gone-a", 2)
    _evidence_chunks(store, "c2", "bob", "kept-b", 1)
    _evidence_chunks(store, "c2", "bob", "gone-b", 4)
    # An uploaded case document next to the evidence: not the evidence service's business.
    store.upsert(
        "case_c1", ["doc1:0"], [VEC], ["t"], [{"document_id": "doc1", "origin": "document"}]
    )

    async def claim(s):  # type: ignore[no-untyped-def]
        s.add(CaseCollection(case_id="c1", owner_id="alice"))
        s.add(CaseCollection(case_id="c2", owner_id="bob"))
        s.add(
            Document(
                id="doc1",
                owner_id="alice",
                scope="case",
                case_id="c1",
                collection="case_c1",
                title="doc1",
                document_type="runbook",
                tags=[],
                tags_index=",",
                filename="doc1.md",
                size_bytes=1,
                sha256="0" * 64,
                status="processed",
            )
        )

    kdb(claim)
    settings = Settings(data_dir=data_dir, chroma_url=chroma_url)

    def purge(exists: Any) -> dict[str, Any]:
        return purge_orphans(
            settings,
            LocalBlobStore(settings.knowledge_dir),
            store,
            Bm25Indexes(settings.bm25_dir, store),
            kdb,
            grace_seconds=3600,
            now=time.time(),
            evidence_exists=exists,
        )

    return {"store": store, "purge": purge}


def test_chunks_of_deleted_evidence_files_are_removed_and_the_rest_kept(world) -> None:  # type: ignore[no-untyped-def]
    store: VectorStore = world["store"]
    evidence = Evidence({"alice": {"kept-a"}, "bob": {"kept-b"}})

    result = world["purge"](evidence)

    assert _evidence_ids(store, "case_c1") == {"kept-a"}
    assert _evidence_ids(store, "case_c2") == {"kept-b"}
    assert store.count("case_c1") == 3 + 1  # kept-a's chunks and the uploaded document
    assert store.count("case_c2") == 1
    assert result["evidence_check"] == "done"
    assert result["evidence_chunks_deleted"] == 2 + 4
    assert result["evidence_files_gone"] == 2
    assert sorted(result["changed_collections"]) == ["case_c1", "case_c2"]
    # Each owner was asked about its own files only.
    assert sorted(evidence.asked) == [
        ("alice", ["gone-a", "kept-a"]),
        ("bob", ["gone-b", "kept-b"]),
    ]
    again = world["purge"](evidence)
    assert again["evidence_chunks_deleted"] == 0
    assert again["changed_collections"] == []


@pytest.mark.parametrize(
    "down",
    [
        Unavailable("The evidence service is unavailable.", code="EVIDENCE_UNAVAILABLE"),
        GatewayTimeout("The evidence service did not answer in time."),
        Unauthorized("The client credentials are not valid.", code="INVALID_CLIENT"),
    ],
    ids=["unavailable", "timeout", "credentials-refused"],
)
def test_nothing_is_removed_while_the_evidence_service_is_unreachable(world, down) -> None:  # type: ignore[no-untyped-def]
    store: VectorStore = world["store"]
    evidence = Evidence({}, fail={"alice": down, "bob": down})

    result = world["purge"](evidence)

    assert _evidence_ids(store, "case_c1") == {"kept-a", "gone-a"}
    assert _evidence_ids(store, "case_c2") == {"kept-b", "gone-b"}
    assert result["evidence_check"] == "incomplete"
    assert result["evidence_chunks_deleted"] == 0
    assert result["evidence_owners_skipped"] == 2
    assert len(evidence.asked) == 1  # down: the pass stops at the first failure
    assert result["changed_collections"] == []


def test_an_owner_that_cannot_be_asked_for_is_skipped_the_others_swept(world) -> None:  # type: ignore[no-untyped-def]
    store: VectorStore = world["store"]
    evidence = Evidence(
        {"bob": {"kept-b"}}, fail={"alice": NotFound("No such user.", code="USER_NOT_FOUND")}
    )

    result = world["purge"](evidence)

    assert _evidence_ids(store, "case_c1") == {"kept-a", "gone-a"}
    assert _evidence_ids(store, "case_c2") == {"kept-b"}
    assert result["evidence_owners_skipped"] == 1
    assert result["evidence_chunks_deleted"] == 4


def test_without_an_evidence_check_evidence_chunks_are_left_alone(world) -> None:  # type: ignore[no-untyped-def]
    store: VectorStore = world["store"]
    result = world["purge"](None)
    assert result["evidence_check"] == "off"
    assert _evidence_ids(store, "case_c1") == {"kept-a", "gone-a"}


def test_questions_are_batched(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cleanup, "EVIDENCE_BATCH", 1)
    evidence = Evidence({"alice": {"kept-a"}, "bob": {"kept-b"}})
    result = world["purge"](evidence)
    assert all(len(ids) == 1 for _, ids in evidence.asked)
    assert len(evidence.asked) == 4
    assert result["evidence_chunks_deleted"] == 6
