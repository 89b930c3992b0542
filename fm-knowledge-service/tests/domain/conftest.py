"""Domain fixtures: a migrated SQLite knowledge database with a synchronous `db(fn)`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fm_common.db import create_engine, create_sessionmaker, migrate_sync
from knowledge_service.main import MIGRATIONS


@pytest.fixture
def kdb(sqlite_url: str) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]:
    migrate_sync(MIGRATIONS, sqlite_url)

    def db(fn: Callable[[Any], Awaitable[Any]]) -> Any:
        async def unit() -> Any:
            engine = create_engine(sqlite_url)
            try:
                async with create_sessionmaker(engine)() as session:
                    result = await fn(session)
                    await session.commit()
                    return result
            finally:
                await engine.dispose()

        return asyncio.run(unit())

    return db
