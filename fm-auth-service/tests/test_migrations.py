"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from auth_service.domain.models import Base
from auth_service.main import MIGRATIONS
from fm_common.db import create_engine, migrate


async def _diff(url: str) -> list:
    await migrate(MIGRATIONS, url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def test_migrations_match_the_models_on_sqlite(tmp_path: Path):
    assert await _diff(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}") == []


async def test_migrations_match_the_models_on_postgresql(postgres_url: str):
    assert await _diff(postgres_url) == []


async def test_migrating_twice_is_harmless(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}"
    await migrate(MIGRATIONS, url)
    assert await _diff(url) == []
