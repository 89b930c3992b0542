"""Domain fixtures: a migrated SQLite knowledge database with a synchronous `db(fn)`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fm_common.db import create_engine, create_sessionmaker, migrate_sync
from knowledge_service.main import MIGRATIONS


def migrated_db(url: str) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]:
    """Migrate the knowledge database at `url`; a `db(fn)` that runs one committed unit."""
    migrate_sync(MIGRATIONS, url)

    def db(fn: Callable[[Any], Awaitable[Any]]) -> Any:
        async def unit() -> Any:
            engine = create_engine(url)
            try:
                async with create_sessionmaker(engine)() as session:
                    result = await fn(session)
                    await session.commit()
                    return result
            finally:
                await engine.dispose()

        return asyncio.run(unit())

    return db


@pytest.fixture
def kdb(sqlite_url: str) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]:
    return migrated_db(sqlite_url)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request: pytest.FixtureRequest) -> str:
    """The knowledge database on SQLite, then on PostgreSQL (skipped where absent)."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    try:
        return str(request.getfixturevalue("postgres_url"))
    except pytest.FixtureLookupError:
        pytest.skip("PostgreSQL SKIPPED: the `postgres_url` fixture is missing")


@pytest.fixture
def any_kdb(any_db_url: str) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]:
    return migrated_db(any_db_url)
