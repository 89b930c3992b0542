"""Batched ingestion claims (ADR 0057), on SQLite and PostgreSQL, and migrations that
match the models."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fm_common.db import create_engine, migrate_sync, utcnow
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.documents.models import Document
from knowledge_service.domain.documents.repository import DocumentRepository
from knowledge_service.domain.models import Base
from knowledge_service.main import MIGRATIONS

Db = Callable[[Callable[[Any], Awaitable[Any]]], Any]
STALE = 600.0


@pytest.fixture
def db(any_kdb: Db) -> Db:
    return any_kdb


def _add(
    db: Db, doc_id: str, *, size: int = 100, age: int = 0, owner: str = "o", **fields: Any
) -> None:
    async def add(s: Any) -> None:
        await DocumentRepository(s).add(
            Document(
                id=doc_id,
                owner_id=owner,
                scope="personal",
                collection="user_o",
                title=doc_id,
                document_type="runbook",
                tags=[],
                tags_index=",",
                filename=f"{doc_id}.md",
                size_bytes=size,
                sha256="0" * 64,
                status=fields.pop("status", "processing"),
                job_id=f"job-{doc_id}",
                created_at=utcnow() - timedelta(seconds=1000 - age),
                **fields,
            ),
        )

    db(add)


def _claim(
    db: Db, doc_id: str, claimer: str, n: int = 4, max_bytes: int = 10_000, share: int = 1
) -> Any:
    claim = db(
        lambda s: documents.claim_batch(
            s,
            doc_id,
            claimer,
            max_documents=n,
            max_bytes=max_bytes,
            stale_after=STALE,
            share=share,
        )
    )
    return claim.state, [d.id for d in claim.docs]


def _holder(db: Db, doc_id: str) -> str | None:
    async def get(s: Any) -> str | None:
        doc = await DocumentRepository(s).get(doc_id)
        return None if doc is None else doc.claimed_by

    return db(get)


def test_a_run_takes_its_document_then_the_newest_waiting_ones(db: Db) -> None:
    for i in range(6):
        _add(db, f"d{i}", age=i)
    _add(db, "done", status="processed")
    # The queue hands out the oldest document's task first; its run takes the newest,
    # so the next task (d1) finds its document free.
    state, ids = _claim(db, "d0", "run-a", n=4)
    assert state == "claimed"
    assert ids == ["d0", "d5", "d4", "d3"]
    assert all(_holder(db, i) == "run-a" for i in ids)
    # Another run skips what run-a holds.
    assert _claim(db, "d1", "run-b", n=4) == ("claimed", ["d1", "d2"])
    assert _holder(db, "done") is None


def test_parallel_runs_share_what_is_waiting(db: Db) -> None:
    for i in range(10):
        _add(db, f"d{i}", age=i)
    # Two runs, ten waiting: each takes half, not eight and two.
    state, ids = _claim(db, "d0", "run-a", n=8, share=2)
    assert (state, ids) == ("claimed", ["d0", "d9", "d8", "d7", "d6"])
    assert _claim(db, "d1", "run-b", n=8, share=2)[1] == ["d1", "d5", "d4"]
    # Shares are by size too: a big document is more than a share of the bytes, so it
    # is left for the next run (d2, d3 and big wait: two documents' worth each).
    _add(db, "big", size=1_000, age=60)
    assert _claim(db, "d2", "run-d", n=8, share=2)[1] == ["d2", "d3"]
    assert _claim(db, "big", "run-e", n=8, share=2)[1] == ["big"]
    # A long queue fills whole batches.
    for i in range(10, 50):
        _add(db, f"d{i}", age=i)
    assert len(_claim(db, "d10", "run-c", n=8, share=2)[1]) == 8


def test_the_byte_budget_bounds_a_batch_but_never_drops_its_own_document(db: Db) -> None:
    _add(db, "big", size=5_000, age=0)
    _add(db, "huge", size=50_000, age=1)
    _add(db, "small", size=100, age=2)
    _add(db, "own", size=20_000, age=3)
    state, ids = _claim(db, "own", "run-a", n=8, max_bytes=25_000)
    assert state == "claimed"
    # Newest first: small fits, huge would go over, and then so would big.
    assert ids == ["own", "small"]
    # A document over the budget on its own is still ingested, alone.
    assert _claim(db, "huge", "run-b", n=8, max_bytes=25_000) == ("claimed", ["huge"])


def test_a_document_in_another_live_batch_is_left_to_it(db: Db) -> None:
    _add(db, "d0")
    _add(db, "d1", age=1)
    assert _claim(db, "d0", "run-a") == ("claimed", ["d0", "d1"])
    assert _claim(db, "d1", "run-b") == ("elsewhere", [])
    assert _holder(db, "d1") == "run-a"


def test_a_redelivered_run_gets_its_own_claims_back(db: Db) -> None:
    _add(db, "d0")
    _add(db, "d1", age=1)
    assert _claim(db, "d0", "run-a") == ("claimed", ["d0", "d1"])
    assert _claim(db, "d0", "run-a") == ("claimed", ["d0", "d1"])


def test_a_claim_older_than_the_stale_limit_can_be_taken_over(db: Db) -> None:
    _add(db, "d0", claimed_by="dead-run", claimed_at=utcnow() - timedelta(seconds=STALE + 5))
    _add(db, "d1", age=1, claimed_by="live-run", claimed_at=utcnow())
    assert _claim(db, "d0", "run-b") == ("claimed", ["d0"])
    assert _holder(db, "d0") == "run-b"
    assert _holder(db, "d1") == "live-run"


def test_gone_and_settled_documents_are_not_claimed(db: Db) -> None:
    _add(db, "p", status="processed")
    _add(db, "f", status="failed")
    assert _claim(db, "p", "run-a") == ("done", [])
    assert _claim(db, "f", "run-a") == ("done", [])
    assert _claim(db, "missing", "run-a") == ("gone", [])


def test_released_documents_are_free_again_and_settled_ones_stay_settled(db: Db) -> None:
    for i in range(4):
        _add(db, f"d{i}", age=i)
    assert sorted(_claim(db, "d0", "run-a")[1]) == ["d0", "d1", "d2", "d3"]
    db(lambda s: documents.mark_processed(s, [("d3", 2, "preview")], "m"))
    released = db(lambda s: documents.release_claims(s, "run-a", "d0"))
    assert sorted(d.id for d in released) == ["d1", "d2"]
    assert [_holder(db, i) for i in ("d0", "d1", "d2", "d3")] == ["run-a", None, None, None]
    assert _claim(db, "d1", "run-b") == ("claimed", ["d1", "d2"])


def test_marking_processed_clears_the_claim_and_skips_deleted_documents(db: Db) -> None:
    _add(db, "d0", claimed_by="run-a", claimed_at=utcnow())
    kept = db(lambda s: documents.mark_processed(s, [("d0", 3, "p"), ("gone", 1, "p")], "m"))
    assert kept == {"d0"}

    async def read(s: Any) -> tuple[str, int, str | None]:
        doc = await DocumentRepository(s).get("d0")
        return doc.status, doc.chunk_count, doc.claimed_by

    assert db(read) == ("processed", 3, None)


def test_migrations_match_the_models(any_db_url: str) -> None:
    migrate_sync(MIGRATIONS, any_db_url)

    async def diff() -> list[Any]:
        engine = create_engine(any_db_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(  # type: ignore[no-any-return]
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []


def test_a_batch_serves_every_waiting_user_round_robin(db: Db) -> None:
    # Issue 16 item 5: one user's indexing held both worker children for 7 minutes while
    # 34 other tasks waited. Bob's one document waited before Hog's 40 (the oldest
    # waiting), Carol's after them: the next batch of Hog's takes one of each user's
    # before a second of Hog's.
    _add(db, "bob-1", owner="bob", age=0)
    for i in range(40):
        _add(db, f"hog-{i}", owner="hog", age=10 + i)
    _add(db, "carol-1", owner="carol", age=100)
    state, ids = _claim(db, "hog-0", "run-a", n=4)
    assert state == "claimed"
    assert ids[0] == "hog-0"
    assert set(ids[1:3]) == {"bob-1", "carol-1"}
    assert ids[3].startswith("hog-")
