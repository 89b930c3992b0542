"""The repository on both backends: SQLite and a real PostgreSQL server.

PostgreSQL comes from fm_common.testing (postgres_server / postgres_url); where it cannot
start, or the fixture is missing, these tests skip with the reason in the skip message.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import evidence_service
from evidence_service.domain.evidence.models import EvidenceFileRow
from evidence_service.domain.evidence.repository import EvidenceRepository
from evidence_service.main import create_app
from fm_common.db import create_engine, create_sessionmaker, migrate

MIGRATIONS = Path(evidence_service.__file__).parent / "migrations"
Maker = async_sessionmaker[AsyncSession]


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "sqlite":
        return request.getfixturevalue("sqlite_url")
    try:
        return request.getfixturevalue("postgres_url")
    except pytest.FixtureLookupError:
        pytest.skip(
            "PostgreSQL SKIPPED: the `postgres_url` fixture (fm_common/testing/postgres.py) "
            "is missing from fm_common.testing.plugin"
        )


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    return _url(request, request.param)


@pytest.fixture
async def maker(db_url: str) -> AsyncIterator[Maker]:
    await migrate(MIGRATIONS, db_url)
    engine = create_engine(db_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _row(owner: str, case: str, content_hash: str, **kw) -> EvidenceFileRow:
    defaults = {
        "id": str(uuid.uuid4()),
        "owner_id": owner,
        "case_id": case,
        "filename": "a.log",
        "size_bytes": 10,
        "content_type": "text/plain",
        "content_hash": content_hash,
        "source_type": "logs",
        "upload_source": "file_upload",
        "uploaded_at_turn": 0,
        "analysis_status": "pending",
        "uploaded_at": datetime.now(UTC),
    }
    return EvidenceFileRow(**(defaults | kw))


async def _add(maker: Maker, row: EvidenceFileRow) -> None:
    async with maker() as session, session.begin():
        await EvidenceRepository(session).add(row)


async def test_get_owned_is_scoped_to_owner(maker):
    row = _row("alice", "c1", "h1")
    await _add(maker, row)
    async with maker() as session:
        repo = EvidenceRepository(session)
        assert (await repo.get_owned("alice", row.id)).id == row.id
        assert await repo.get_owned("bob", row.id) is None


async def test_same_hash_in_same_case_violates_unique_constraint(maker):
    await _add(maker, _row("alice", "c1", "h1"))
    with pytest.raises(IntegrityError):
        await _add(maker, _row("alice", "c1", "h1"))
    await _add(maker, _row("alice", "c2", "h1"))
    await _add(maker, _row("bob", "c1", "h1"))
    async with maker() as session:
        found = await EvidenceRepository(session).find_by_hash("alice", "c1", "h1")
    assert found is not None


async def test_racing_inserts_of_one_hash_store_one_row(maker):
    results = await asyncio.gather(
        *(_add(maker, _row("alice", "race", "same")) for _ in range(6)), return_exceptions=True
    )
    assert sum(1 for r in results if r is None) == 1
    assert all(isinstance(r, IntegrityError) for r in results if r is not None)


async def test_list_case_pages_and_sorts_within_owner_and_case(maker):
    for i, size in enumerate([30, 10, 20]):
        await _add(maker, _row("alice", "c1", f"h{i}", size_bytes=size, uploaded_at_turn=i))
    await _add(maker, _row("bob", "c1", "hb"))
    await _add(maker, _row("alice", "c2", "hc"))
    async with maker() as session:
        repo = EvidenceRepository(session)
        rows, total = await repo.list_case(
            "alice", "c1", limit=2, offset=0, sort_by="size", descending=False
        )
        assert total == 3
        assert [r.size_bytes for r in rows] == [10, 20]
        rows, _ = await repo.list_case(
            "alice", "c1", limit=5, offset=0, sort_by="uploaded_at_turn", descending=True
        )
        assert [r.uploaded_at_turn for r in rows] == [2, 1, 0]


async def test_delete_case_returns_deleted_ids_of_owner_only(maker):
    mine = [_row("alice", "c1", f"h{i}") for i in range(3)]
    for row in mine:
        await _add(maker, row)
    await _add(maker, _row("bob", "c1", "hb"))
    async with maker() as session, session.begin():
        ids = await EvidenceRepository(session).delete_case("alice", "c1")
    assert sorted(ids) == sorted(r.id for r in mine)
    async with maker() as session, session.begin():
        assert await EvidenceRepository(session).delete_case("alice", "c1") == []
        assert len(await EvidenceRepository(session).delete_case("bob", "c1")) == 1


async def test_unqueued_text_files_and_mark_queued(maker):
    old = datetime.now(UTC) - timedelta(minutes=5)
    text = _row("alice", "c1", "h1", uploaded_at=old)
    image = _row("alice", "c1", "h2", uploaded_at=old, source_type="image")
    fresh = _row("alice", "c1", "h3")
    for row in (text, image, fresh):
        await _add(maker, row)
    before = datetime.now(UTC) - timedelta(minutes=1)
    async with maker() as session:
        rows = await EvidenceRepository(session).unqueued_text_files(before, 10)
    # Images are indexed too (their OCR text).
    assert {r.id for r in rows} == {text.id, image.id}
    async with maker() as session, session.begin():
        await EvidenceRepository(session).mark_queued(text.id, datetime.now(UTC))
        await EvidenceRepository(session).mark_queued(image.id, datetime.now(UTC))
    async with maker() as session:
        repo = EvidenceRepository(session)
        assert await repo.unqueued_text_files(before, 10) == []
        assert await repo.existing_ids([text.id, "nope"]) == {text.id}


async def test_concurrent_api_uploads_store_one_file(request, settings, alice, stored_in):
    """The whole upload path with separate connections racing (PostgreSQL)."""
    url = _url(request, "postgres")
    app = create_app(settings.model_copy(update={"database_url": url}))
    content = b"2024-05-01T10:00:00Z ERROR pg race\n" * 5000
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/evidence",
                        data={"case_id": alice.case_id},
                        files={"file": ("r.log", content, "text/plain")},
                        headers=alice.headers,
                    )
                    for _ in range(6)
                )
            )
    assert sorted(r.status_code for r in answers) == [200] * 5 + [201]
    assert len({r.json()["file_id"] for r in answers}) == 1
    assert len(stored_in(settings)) == 1
