"""`python -m fm_common.migrate <module>` (the Helm chart's migrations Job) and the
advisory lock every PostgreSQL migration holds (ADR 0150)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from fm_common.db import MIGRATION_LOCK
from fm_common.migrate import migrate_service


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _version_table(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"))


async def test_migrates_a_service_database_to_head(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FM_CASE_DATABASE_URL", postgres_url)
    assert await asyncio.to_thread(migrate_service, "case_service") == "postgresql+asyncpg"
    conn = await asyncpg.connect(_plain(postgres_url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
        assert await conn.fetchval("SELECT to_regclass('public.cases') IS NOT NULL")
    finally:
        await conn.close()


async def test_waits_for_the_lock_another_migration_holds(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FM_KNOWLEDGE_DATABASE_URL", postgres_url)
    holder = await asyncpg.connect(_plain(postgres_url))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        task = asyncio.ensure_future(asyncio.to_thread(migrate_service, "knowledge_service"))
        await asyncio.sleep(2.0)
        assert not task.done(), "the migration ran although another one held the lock"
        assert not await _version_table(holder)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await asyncio.wait_for(task, timeout=120)
        assert await _version_table(holder)
        # The migration let its lock go: it can be taken at once.
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK)
    finally:
        await holder.close()


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FM_")}
    return env | settings


def test_a_module_without_tables_is_refused() -> None:
    with pytest.raises(SystemExit, match="owns no tables"):
        migrate_service("gateway")


def test_the_command_migrates_and_says_so(tmp_path: Path) -> None:
    env = _env(FM_DATA_DIR=str(tmp_path), FM_ENVIRONMENT="development")
    done = subprocess.run(
        [sys.executable, "-m", "fm_common.migrate", "auth_service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "auth_service: database (sqlite+aiosqlite) at head" in done.stderr
    assert (tmp_path / "auth" / "auth.db").is_file()
    usage = subprocess.run(
        [sys.executable, "-m", "fm_common.migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2
    assert "usage" in usage.stderr
