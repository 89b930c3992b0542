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

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fm_common.db import create_engine, create_sessionmaker, is_sqlite


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


class SerializedSessionmaker:
    """Write sessions of one process take turns (SQLite has one writer at a time).

    Without this, racing writers wait in SQLite's busy handler, which sleeps in steps of
    up to 100 ms; an asyncio lock queues them in order instead. Other processes (the
    worker) still meet the busy timeout. Used like an async_sessionmaker:
    `async with maker() as session`.
    """

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        async with self._lock, self._maker() as session:
            yield session


def write_sessionmaker(url: str, engine: AsyncEngine) -> Any:
    """The sessionmaker of writes: serialized in-process for SQLite, plain for PostgreSQL."""
    maker = create_sessionmaker(engine)
    return SerializedSessionmaker(maker) if is_sqlite(url) else maker


def open_read_engine(url: str, write_engine: AsyncEngine) -> AsyncEngine:
    """The engine of read-only routes: SQLite reads take no write lock (WAL snapshots)."""
    return create_engine(url) if is_sqlite(url) else write_engine
