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


async def test_replicas_migrating_one_postgresql_at_once_all_start(postgres_url: str):
    """Replicas (processes) that start together migrate one after the other (an advisory
    lock): the first upgrades, the others find the database at head (ADR 0145)."""
    import subprocess
    import sys
    import time

    # Each process imports first, then all start migrating at the same moment.
    probe = (
        "import sys, time; from fm_common.db import migrate_sync; "
        "from auth_service.main import MIGRATIONS; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
        "migrate_sync(MIGRATIONS, sys.argv[1])"
    )
    start = str(time.time() + 10)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", probe, postgres_url, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert await _diff(postgres_url) == []
