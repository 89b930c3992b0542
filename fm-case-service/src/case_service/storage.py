"""The case database engine.

SQLite: every transaction starts with BEGIN IMMEDIATE. A deferred SQLite transaction that
read before another writer committed cannot upgrade to a write (SQLITE_BUSY without
waiting), which would turn two racing creates into a 503; IMMEDIATE makes writers queue
on the busy timeout instead, so the idempotency and turn-key checks see committed rows.
Read-only routes use a second engine with the driver's default (no BEGIN before a
SELECT), so reads never queue behind writers. PostgreSQL relies on row locks
(SELECT ... FOR UPDATE) and unique constraints.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from fm_common.db import create_engine, is_sqlite


def open_engine(url: str) -> AsyncEngine:
    engine = create_engine(url)
    if is_sqlite(url):

        @event.listens_for(engine.sync_engine, "connect")
        def _no_driver_begin(dbapi_conn: Any, _: Any) -> None:
            # Let SQLAlchemy's "begin" event below emit BEGIN (the driver's is DEFERRED).
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_read_engine(url: str, write_engine: AsyncEngine) -> AsyncEngine:
    """The engine of read-only routes: SQLite reads take no write lock (WAL snapshots)."""
    return create_engine(url) if is_sqlite(url) else write_engine


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
