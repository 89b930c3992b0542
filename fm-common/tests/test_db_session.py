"""fm_common.db's request session: work queued with `after_commit` runs in a worker thread
once the commit is done, and never after a rollback."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fm_common.db import DbSession, after_commit, create_engine, create_sessionmaker, new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)


class Boom(Exception):
    pass


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, dict[str, Any]]]:
    path = tmp_path / "notes.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    seen: dict[str, Any] = {"runs": []}

    def stored(note_id: str) -> bool:
        """Whether the note is committed, as another connection sees it."""
        with sqlite3.connect(path) as db:
            return db.execute("SELECT 1 FROM notes WHERE id = ?", (note_id,)).fetchone() is not None

    def work(note_id: str) -> None:
        seen["runs"].append((note_id, threading.get_ident(), stored(note_id)))
        if note_id.startswith("raise"):
            raise RuntimeError("the work failed")

    api = FastAPI()
    api.state.sessionmaker = create_sessionmaker(engine)

    @api.post("/notes/{note_id}", status_code=201)
    async def add(note_id: str, session: DbSession) -> dict[str, str]:
        seen["loop_thread"] = threading.get_ident()
        session.add(Note(id=note_id))
        after_commit(session, lambda: work(note_id))
        if note_id.startswith("fail"):
            raise Boom()
        return {"id": note_id}

    seen["stored"] = stored
    yield api, seen
    await engine.dispose()


def client(api: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_queued_work_runs_off_the_event_loop_after_the_commit(
    app: tuple[FastAPI, dict[str, Any]],
) -> None:
    api, seen = app
    async with client(api) as http:
        assert (await http.post("/notes/n1")).status_code == 201
    ((note_id, thread, committed),) = seen["runs"]
    assert note_id == "n1"
    assert committed, "the work ran before the commit"
    assert thread != seen["loop_thread"], "the work ran on the event loop's thread"


async def test_queued_work_is_dropped_when_the_request_rolls_back(
    app: tuple[FastAPI, dict[str, Any]],
) -> None:
    api, seen = app
    async with client(api) as http:
        assert (await http.post("/notes/fail1")).status_code == 500
    assert seen["runs"] == []
    assert not seen["stored"]("fail1")


async def test_work_that_raises_after_the_commit_leaves_the_answer_and_the_row(
    app: tuple[FastAPI, dict[str, Any]],
) -> None:
    api, seen = app
    async with client(api) as http:
        response = await http.post("/notes/raise1")
    assert response.status_code == 201
    assert [r[0] for r in seen["runs"]] == ["raise1"]
    assert seen["stored"]("raise1")
