"""fm_common.db.Repository: the base every SQL repository of the services stands on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fm_common.db import Repository, create_engine, create_sessionmaker, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(64), unique=True)


class Badge(Base):
    """A table whose id and owner columns have other names."""

    __tablename__ = "badges"

    badge_key: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))


class NoteRepository(Repository[Note]):
    model = Note


class BadgeRepository(Repository[Badge]):
    model = Badge
    id_column = "badge_key"
    owner_column = "holder"


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[AsyncSession]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'repo.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with create_sessionmaker(engine)() as db:
        yield db
    await engine.dispose()


async def test_get_owned_finds_only_the_owners_row(session: AsyncSession) -> None:
    repo = NoteRepository(session)
    await repo.add(Note(id="n1", owner_id="alice", slug="a"))

    assert (await repo.get_owned("alice", "n1")) is not None
    assert await repo.get_owned("bob", "n1") is None
    assert await repo.get_owned("alice", "missing") is None
    # get() is by primary key alone (internal and worker paths).
    found = await repo.get("n1")
    assert found is not None
    assert found.owner_id == "alice"


async def test_get_owned_for_update_reads_the_same_row(session: AsyncSession) -> None:
    repo = NoteRepository(session)
    await repo.add(Note(id="n1", owner_id="alice", slug="a"))
    row = await repo.get_owned("alice", "n1", for_update=True)
    assert row is not None
    assert row.slug == "a"


async def test_add_flushes_so_a_broken_constraint_raises_at_add(session: AsyncSession) -> None:
    repo = NoteRepository(session)
    await repo.add(Note(id="n1", owner_id="alice", slug="same"))
    with pytest.raises(IntegrityError):
        await repo.add(Note(id="n2", owner_id="bob", slug="same"))


async def test_add_makes_the_row_visible_to_queries_before_commit(session: AsyncSession) -> None:
    # The sessions are autoflush=False: without add()'s flush, this select would miss it.
    await NoteRepository(session).add(Note(id="n1", owner_id="alice", slug="a"))
    ids = (await session.scalars(select(Note.id))).all()
    assert ids == ["n1"]


async def test_delete_removes_the_row(session: AsyncSession) -> None:
    repo = NoteRepository(session)
    row = await repo.add(Note(id="n1", owner_id="alice", slug="a"))
    await repo.delete(row)
    assert (await session.scalars(select(Note.id))).all() == []


async def test_renamed_id_and_owner_columns(session: AsyncSession) -> None:
    repo = BadgeRepository(session)
    await repo.add(Badge(badge_key="b1", holder="alice"))
    assert await repo.get_owned("alice", "b1") is not None
    assert await repo.get_owned("bob", "b1") is None
